//! Static path resolution: from the URL path after a mount's prefix to a file inside the
//! mount's root, or nothing. Pure (no I/O besides `canonicalize`), so it can be fuzzed.

use std::path::{Path, PathBuf};

use percent_encoding::percent_decode_str;

/// Maps `rest` (the URL path after the mount prefix, still percent-encoded, without the query)
/// to a path under `root`, which must already be canonical.
///
/// Refused (None): invalid UTF-8 after decoding, NUL or backslashes, empty, `.` or `..`
/// segments, hidden files (segments starting with `.`), and anything whose canonical path —
/// after following symlinks — is not inside `root`. Decoding happens once, before the
/// segments are checked, so `%2e%2e` is a `..` and `%2f` a separator, never a way around them.
pub fn resolve(root: &Path, rest: &str) -> Option<PathBuf> {
    let decoded = percent_decode_str(rest).decode_utf8().ok()?;
    let relative = clean(&decoded)?;
    let candidate = root.join(relative);
    // `canonicalize` resolves symlinks, so a link pointing outside the root is caught here.
    let real = candidate.canonicalize().ok()?;
    real.starts_with(root).then_some(real)
}

/// The decoded path as a relative path of plain segments, or None if any segment is unsafe.
fn clean(decoded: &str) -> Option<PathBuf> {
    if decoded.contains(['\0', '\\']) {
        return None;
    }
    let mut out = PathBuf::new();
    for segment in decoded.split('/') {
        if segment.is_empty() || segment.starts_with('.') {
            return None;
        }
        out.push(segment);
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("css")).unwrap();
        std::fs::write(root.join("css/site.css"), "body{}").unwrap();
        std::fs::write(root.join("a b.txt"), "x").unwrap();
        std::fs::write(root.join(".secret"), "x").unwrap();
        std::fs::write(dir.path().join("outside.txt"), "x").unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside.txt"), root.join("link.txt")).unwrap();
        std::os::unix::fs::symlink(root.join("css/site.css"), root.join("inside.css")).unwrap();
        let root = root.canonicalize().unwrap();
        (dir, root)
    }

    #[test]
    fn plain_and_encoded_names_resolve() {
        let (_d, root) = tree();
        assert_eq!(resolve(&root, "css/site.css"), Some(root.join("css/site.css")));
        assert_eq!(resolve(&root, "a%20b.txt"), Some(root.join("a b.txt")));
        assert_eq!(resolve(&root, "inside.css"), Some(root.join("css/site.css")));
    }

    #[test]
    fn traversal_in_every_spelling_is_refused() {
        let (_d, root) = tree();
        for rest in [
            "../outside.txt",
            "css/../../outside.txt",
            "%2e%2e/outside.txt",
            "%2E%2E%2Foutside.txt",
            "css%2f..%2f..%2foutside.txt",
            "..%5coutside.txt",
            "css/./site.css",
            "css//site.css",
            "/etc/passwd",
            "%2fetc%2fpasswd",
            "css/site.css%00.png",
            ".secret",
            "link.txt",
            "",
            "css/",
            "%ff.txt",
        ] {
            assert_eq!(resolve(&root, rest), None, "{rest:?} must be refused");
        }
    }

    #[test]
    fn missing_files_are_none() {
        let (_d, root) = tree();
        assert_eq!(resolve(&root, "css/nope.css"), None);
    }
}
