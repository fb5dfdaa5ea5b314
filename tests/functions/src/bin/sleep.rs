//! Sleeps for the number of milliseconds in the body (default 1000), then answers "slept".
fn main() {
    fdk::run(move |req| {
        let ms: u64 = String::from_utf8_lossy(&req.body).trim().parse().unwrap_or(1000);
        std::thread::sleep(std::time::Duration::from_millis(ms));
        fdk::Response::ok("slept")
    });
}
