//! Writes a log that is not text to stderr: NUL bytes and bytes that are not UTF-8
//! (`nul:\0 invalid:\xff\xfe end\n`), then as many more bytes of the same kind as the body asks for
//! (a number, default 0); answers "ok" a moment later, since stderr reaches the agent on Docker's
//! attach stream apart from the answer and a successful call's log is taken when it answers.
use std::io::Write;

fn main() {
    fdk::run(move |req| {
        let extra: usize = String::from_utf8_lossy(&req.body).trim().parse().unwrap_or(0);
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(b"nul:\0 invalid:\xff\xfe end\n");
        let pattern = [0u8, 0xff, b'a', b'\n'];
        let more: Vec<u8> = pattern.iter().copied().cycle().take(extra).collect();
        let _ = err.write_all(&more);
        let _ = err.flush();
        std::thread::sleep(std::time::Duration::from_millis(300));
        fdk::Response::ok("ok")
    });
}
