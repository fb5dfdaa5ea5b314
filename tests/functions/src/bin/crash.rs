//! Exits with the code in the body (default 3) while handling a call.
fn main() {
    fdk::run(move |req| {
        let code: i32 = String::from_utf8_lossy(&req.body).trim().parse().unwrap_or(3);
        eprintln!("crash: exiting with {code}");
        std::process::exit(code)
    });
}
