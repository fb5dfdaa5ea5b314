//! The README quickstart function: answers `Hello, <body>!` (`Hello, world!` for an empty body).
fn main() {
    fdk::run(|req| {
        let name = String::from_utf8_lossy(&req.body).trim().to_string();
        let name = if name.is_empty() { "world".to_string() } else { name };
        fdk::Response::ok(format!("Hello, {name}!\n")).header("Content-Type", "text/plain")
    });
}
