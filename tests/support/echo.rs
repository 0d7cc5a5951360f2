//! The stub app's echo read back: the facts of one request as the core handed it to the app
//! (`stub::echo` writes them).

/// The stub app's account of one request (see `stub::echo`).
#[derive(Debug)]
pub struct Echo {
    facts: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Echo {
    pub fn parse(data: &[u8]) -> Self {
        let mut facts: Vec<(String, Vec<u8>)> = std::str::from_utf8(data)
            .unwrap()
            .lines()
            .map(|l| {
                let (key, value) = l.split_once(' ').unwrap_or((l, ""));
                (key.to_owned(), unescape(value))
            })
            .collect();
        let (key, hex) = facts.pop().expect("an empty echo");
        assert_eq!(key, "body", "an echo ends with the body");
        let nibble = |h: u8| char::from(h).to_digit(16).unwrap() as u8;
        let body = hex.chunks(2).map(|h| nibble(h[0]) << 4 | nibble(h[1])).collect();
        Self { facts, body }
    }

    /// Every value of one fact (`host` may repeat), as bytes.
    pub fn all(&self, key: &str) -> Vec<Vec<u8>> {
        self.facts.iter().filter(|(k, _)| k == key).map(|(_, v)| v.clone()).collect()
    }

    /// One fact as text (bytes above 0x7f as latin-1, as PEP 3333 gives them to an app).
    pub fn get(&self, key: &str) -> String {
        match self.all(key).as_slice() {
            [one] => latin1(one),
            other => panic!("{key}: {} values in {self:?}", other.len()),
        }
    }

    /// The lines of one request header, in order.
    pub fn header(&self, name: &str) -> Vec<Vec<u8>> {
        self.all(&format!("header:{name}"))
    }

    /// The only line of one request header, as text; None when absent.
    pub fn header1(&self, name: &str) -> Option<String> {
        match self.header(name).as_slice() {
            [] => None,
            [one] => Some(latin1(one)),
            more => panic!("{name} came {} times", more.len()),
        }
    }

    /// Names of every request header the app saw.
    pub fn header_names(&self) -> Vec<String> {
        self.facts.iter().filter_map(|(k, _)| k.strip_prefix("header:").map(str::to_owned)).collect()
    }

    /// The client's IP address as the core resolved it (proxy headers applied).
    pub fn remote_ip(&self) -> String {
        let remote = self.get("remote");
        remote.parse::<std::net::SocketAddr>().map_or(remote, |a| a.ip().to_string())
    }

    pub fn remote_port(&self) -> u16 {
        self.get("remote").parse::<std::net::SocketAddr>().unwrap().port()
    }

    /// The server port the app is told (SERVER_PORT / scope["server"]).
    pub fn local_port(&self) -> u16 {
        self.get("local").parse::<std::net::SocketAddr>().unwrap().port()
    }
}

pub fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// The inverse of `<[u8]>::escape_ascii`.
fn unescape(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next().unwrap() {
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'n' => out.push(b'\n'),
            b'x' => {
                let hex = [bytes.next().unwrap(), bytes.next().unwrap()];
                out.push(u8::from_str_radix(std::str::from_utf8(&hex).unwrap(), 16).unwrap());
            }
            other => out.push(other), // \\ \' \"
        }
    }
    out
}
