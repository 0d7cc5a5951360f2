//! wsload-rs: websocket echo load for bench/run.py's `ws` scenario, the Rust twin of bench/wsload.py.
//!
//!     wsload-rs ws://127.0.0.1:8000/ws/echo --connections 64 --duration 10 --warmup 1 [--size 64] [--timeout 10]
//!
//! Same load and same output as wsload.py, so results stay comparable: open every connection first, then each
//! one sends a `--size`-byte binary message and waits for its echo, again and again (one message in flight per
//! connection); after `--warmup` seconds the counters start, after `--duration` more they stop. Prints one JSON
//! line: messages, messages/s, latency percentiles (ms, Python's `statistics.quantiles(method="inclusive")`) and
//! errors (connect, closed, timeout, mismatch).
//!
//! Why it exists: the Python client saturates its own core at ~13k msg/s and so measured itself. This one runs
//! every connection on a single thread (current-thread runtime plus a LocalSet, so the shared counters are
//! plain `Cell`s): the machine has two cores and the server under test needs the other one.

use std::cell::{Cell, RefCell};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::Notify;
use tokio::task::LocalSet;
use tokio::time::{sleep, timeout};
use tokio_tungstenite::connect_async_with_config;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Bytes, Message};

struct Args {
    url: String,
    connections: usize,
    duration: f64,
    warmup: f64,
    size: usize,
    timeout: f64,
}

const USAGE: &str = "usage: wsload-rs URL [--connections 64] [--duration 10] [--warmup 1] [--size 64] [--timeout 10]";

fn number<T: std::str::FromStr>(arg: &str, value: &str) -> Result<T, String> {
    value.parse().map_err(|_| format!("bad value for {arg}: {value}"))
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { url: String::new(), connections: 64, duration: 10.0, warmup: 1.0, size: 64, timeout: 10.0 };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        if !arg.starts_with("--") {
            args.url = arg;
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--connections" => args.connections = number(&arg, &value)?,
            "--duration" => args.duration = number(&arg, &value)?,
            "--warmup" => args.warmup = number(&arg, &value)?,
            "--size" => args.size = number(&arg, &value)?,
            "--timeout" => args.timeout = number(&arg, &value)?,
            _ => return Err(format!("unknown option {arg}")),
        }
    }
    if args.url.is_empty() || args.connections == 0 || args.duration <= 0.0 || args.warmup < 0.0 {
        return Err("a URL, connections >= 1, duration > 0 and warmup >= 0 are required".into());
    }
    Ok(args)
}

/// Shared by every connection task; single-threaded, hence `Cell`/`RefCell`.
#[derive(Default)]
struct Stats {
    measuring: Cell<bool>,
    stop: Cell<bool>,
    latencies: RefCell<Vec<f64>>, // seconds, one per echo completed while measuring
    connect: Cell<u64>,
    closed: Cell<u64>,
    timeout: Cell<u64>,
    mismatch: Cell<u64>,
    pending_open: Cell<usize>,
    all_open: Notify,
}

impl Stats {
    fn bump(c: &Cell<u64>) {
        c.set(c.get() + 1);
    }

    /// A connection finished its handshake, or failed it: the load starts once none is pending.
    fn opened(&self) {
        self.pending_open.set(self.pending_open.get() - 1);
        if self.pending_open.get() == 0 {
            self.all_open.notify_one(); // stores a permit if main is not waiting yet
        }
    }
}

const READ_BUFFER: usize = 4096;

async fn one_connection(url: Rc<str>, payload: Bytes, st: Rc<Stats>, limit: Duration) {
    // No size limits (like max_size=None in wsload.py); TCP_NODELAY as asyncio sets it on every TCP socket.
    // A 4 KiB read buffer: tungstenite zero-fills the whole free buffer before every read, and with its 128 KiB
    // default that memset was ~45% of this client's CPU on 64-byte echoes.
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER).max_message_size(None).max_frame_size(None);
    let mut ws = match timeout(limit, connect_async_with_config(&*url, Some(config), true)).await {
        Ok(Ok((ws, _response))) => ws,
        _ => {
            Stats::bump(&st.connect);
            st.opened();
            return;
        }
    };
    st.opened();
    while !st.stop.get() {
        let t0 = Instant::now();
        if ws.send(Message::Binary(payload.clone())).await.is_err() {
            if !st.stop.get() {
                Stats::bump(&st.closed);
            }
            return;
        }
        // Control frames are answered by tungstenite itself; skip them like websockets' recv() does.
        let reply = loop {
            match timeout(limit, ws.next()).await {
                Err(_) => {
                    Stats::bump(&st.timeout);
                    return;
                }
                Ok(Some(Ok(Message::Binary(b)))) => break Some(b),
                Ok(Some(Ok(Message::Text(_)))) => break None,
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)))) => continue,
                Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => {
                    if !st.stop.get() {
                        Stats::bump(&st.closed);
                    }
                    return;
                }
            }
        };
        if st.measuring.get() {
            st.latencies.borrow_mut().push(t0.elapsed().as_secs_f64());
            if reply.as_ref() != Some(&payload) {
                Stats::bump(&st.mismatch);
            }
        }
    }
    // A clean close handshake, as wsload.py's `async with` does, so servers do not log aborted connections.
    let _ = timeout(limit, async {
        let _ = ws.close(None).await;
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

/// `statistics.quantiles(data, n=100, method="inclusive")` cut points 50, 90 and 99 of sorted `v` (len >= 2).
fn percentile(v: &[f64], i: usize) -> f64 {
    let m = v.len() - 1;
    let (j, delta) = ((i * m) / 100, (i * m) % 100);
    (v[j] * (100 - delta) as f64 + v[j + 1] * delta as f64) / 100.0
}

/// Random payload bytes (xorshift seeded from the clock): like os.urandom in wsload.py, without a dependency.
fn payload(size: usize) -> Bytes {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
    let mut x = nanos | 1;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

async fn run(args: Args) -> Result<String, String> {
    let st = Rc::new(Stats::default());
    st.pending_open.set(args.connections);
    let url: Rc<str> = args.url.as_str().into();
    let data = payload(args.size);
    let limit = Duration::from_secs_f64(args.timeout);
    let tasks: Vec<_> = (0..args.connections)
        .map(|_| tokio::task::spawn_local(one_connection(url.clone(), data.clone(), st.clone(), limit)))
        .collect();
    timeout(limit + Duration::from_secs(30), st.all_open.notified())
        .await
        .map_err(|_| "connections did not open in time".to_string())?;
    sleep(Duration::from_secs_f64(args.warmup)).await;
    st.measuring.set(true);
    let start = Instant::now();
    sleep(Duration::from_secs_f64(args.duration)).await;
    st.measuring.set(false);
    let elapsed = start.elapsed().as_secs_f64();
    st.stop.set(true);
    let _ = timeout(limit + Duration::from_secs(5), futures_util::future::join_all(tasks)).await;

    let mut lat: Vec<f64> = st.latencies.borrow().iter().map(|s| s * 1000.0).collect();
    lat.sort_unstable_by(f64::total_cmp);
    let pct = if lat.len() >= 2 {
        let (p50, p90, p99) = (percentile(&lat, 50), percentile(&lat, 90), percentile(&lat, 99));
        format!(r#"{{"p50": {p50}, "p90": {p90}, "p99": {p99}}}"#)
    } else {
        "{}".to_string()
    };
    // The fields bench/loadgen.py's run_ws reads, as wsload.py prints them, plus which client this was.
    Ok(format!(
        concat!(
            r#"{{"client": "wsload-rs", "connections": {}, "messages": {}, "seconds": {}, "messages_per_s": {}, "#,
            r#""latency_ms": {}, "errors": {{"connect": {}, "closed": {}, "timeout": {}, "mismatch": {}}}}}"#
        ),
        args.connections,
        lat.len(),
        elapsed,
        lat.len() as f64 / elapsed,
        pct,
        st.connect.get(),
        st.closed.get(),
        st.timeout.get(),
        st.mismatch.get(),
    ))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("wsload-rs: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    match LocalSet::new().block_on(&rt, run(args)) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wsload-rs: {e}");
            ExitCode::FAILURE
        }
    }
}
