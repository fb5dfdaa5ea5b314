//! Writes the tag it is given (the request body) to stderr, three lines before and three after a
//! little work, then answers the tag: each call's log must hold its own tag and no other.
fn main() {
    fdk::run(move |req| {
        let tag = String::from_utf8_lossy(&req.body).trim().to_string();
        for i in 0..3 {
            eprintln!("{tag} before {i}");
        }
        let mut x = 0u64;
        for i in 0..100_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        for i in 0..3 {
            eprintln!("{tag} after {i} ({})", x % 10);
        }
        fdk::Response::ok(tag)
    });
}
