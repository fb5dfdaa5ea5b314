//! Network reachability probe. At start it listens on TCP port 7000 (accepting and closing every
//! connection), so other containers can try to reach it. Each call's body is `host:port`: the
//! function tries a TCP connect there (1 s timeout) and answers `connected` or `blocked: <why>`.
//! An empty body answers `listening`.
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The port this function listens on.
const PORT: u16 = 7000;

fn main() {
    let listener = TcpListener::bind(("0.0.0.0", PORT)).expect("bind the probe port");
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            drop(conn);
        }
    });
    fdk::run(|req| {
        let target = String::from_utf8_lossy(&req.body).trim().to_string();
        if target.is_empty() {
            return fdk::Response::ok("listening");
        }
        let addr = match target.to_socket_addrs().ok().and_then(|mut a| a.next()) {
            Some(a) => a,
            None => return fdk::Response::ok(format!("blocked: cannot resolve {target}")),
        };
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(_) => fdk::Response::ok("connected"),
            Err(e) => fdk::Response::ok(format!("blocked: {e}")),
        }
    });
}
