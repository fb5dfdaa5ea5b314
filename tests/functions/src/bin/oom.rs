//! Allocates and touches memory until the kernel's OOM killer stops it.
fn main() {
    fdk::run(move |_req| {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![1u8; 4 << 20]);
            if hoard.len() > 1 << 20 {
                break;
            }
        }
        fdk::Response::ok(format!("survived {}", hoard.len()))
    });
}
