//! `static_path`: `static_files::resolve::resolve(root, rest)` with `rest` (the URL path after a
//! mount's prefix, still percent-encoded) taken from the fuzz input.
//!
//! The root is a real directory tree built once: plain and nested files, a hidden file, names
//! that look encoded (`%2e%2e`, `a%2fb`), symlinks that stay inside, one that escapes to a
//! sibling file, one to a sibling directory whose name extends the root's (`static-evil`), a
//! symlink loop, and an absolute symlink to `/etc`.
//!
//! Asserted, besides "no panic": a resolved path is canonical (canonicalising it again changes
//! nothing), lies inside the canonical root component by component, is never one of the
//! secrets outside it, and no input that still holds a `..` segment after percent-decoding
//! resolves at all. Whatever the input, resolve() must not look past the root.
#![no_main]

use std::path::{Component, PathBuf};
use std::sync::OnceLock;

use _rsgi::http::static_files::resolve::resolve;
use libfuzzer_sys::fuzz_target;

struct Tree {
    _dir: tempfile::TempDir,
    root: PathBuf,
    secrets: Vec<PathBuf>,
}

fn tree() -> &'static Tree {
    static TREE: OnceLock<Tree> = OnceLock::new();
    TREE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        let root = base.join("static");
        for d in ["css", "a/b/c", "%2e%2e", "evil-link-target"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        for f in ["css/site.css", "a/b/c/deep.txt", "index.html", "a b.txt", "%2e%2e/x.txt", "a%2fb", "é.txt", ".env"]
        {
            std::fs::write(root.join(f), f).unwrap();
        }
        std::fs::create_dir_all(base.join("static-evil")).unwrap();
        let secrets = vec![base.join("secret.txt"), base.join("static-evil/secret.txt")];
        for s in &secrets {
            std::fs::write(s, "secret").unwrap();
        }
        use std::os::unix::fs::symlink;
        symlink(base.join("secret.txt"), root.join("escape.txt")).unwrap();
        symlink(base.join("static-evil"), root.join("evil")).unwrap();
        symlink("../secret.txt", root.join("css/up.txt")).unwrap();
        symlink("site.css", root.join("css/alias.css")).unwrap();
        symlink(".", root.join("self")).unwrap();
        symlink("loop", root.join("loop")).unwrap();
        symlink("/etc", root.join("etc")).unwrap();
        Tree { _dir: dir, root, secrets }
    })
}

fuzz_target!(|data: &[u8]| {
    let rest = String::from_utf8_lossy(data);
    let t = tree();
    let Some(found) = resolve(&t.root, &rest) else { return };
    assert!(found.is_absolute(), "{rest:?} resolved to a relative path {found:?}");
    assert_eq!(found.canonicalize().ok().as_ref(), Some(&found), "{rest:?} resolved to a non-canonical path");
    assert!(found.starts_with(&t.root), "{rest:?} resolved to {found:?}, outside {:?}", t.root);
    assert!(
        found.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_))),
        "{rest:?} resolved to {found:?}"
    );
    assert!(!t.secrets.contains(&found), "{rest:?} resolved to a secret: {found:?}");
    assert!(!dot_dot(&rest), "{rest:?} holds a `..` segment but resolved to {found:?}");
    // The bytes of the path, compared as text too: never a sibling that shares the root's name.
    let (f, r) = (found.to_string_lossy(), t.root.to_string_lossy());
    assert!(f == r || f.starts_with(&format!("{r}/")), "{rest:?} resolved to {found:?}");
});

/// Whether the decoded path has a `..` segment, with `/` or `\` as separators.
fn dot_dot(rest: &str) -> bool {
    let decoded: Vec<u8> = percent_encoding::percent_decode_str(rest).collect();
    decoded.split(|&b| b == b'/' || b == b'\\').any(|seg| seg == b"..")
}
