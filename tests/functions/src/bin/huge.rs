//! Answers a body of as many bytes as the body asks for (default 2 MiB).
fn main() {
    fdk::run(move |req| {
        let n: usize = String::from_utf8_lossy(&req.body).trim().parse().unwrap_or(2 << 20);
        fdk::Response::ok(vec![b'x'; n])
    });
}
