//! Spawns threads (each one a task counted by the pids cgroup) until it cannot, then answers how
//! many it got. Under a pids limit the count stays below the limit and the container survives.
fn main() {
    fdk::run(move |_req| {
        let mut spawned = 0u32;
        while spawned < 10_000 {
            let t = std::thread::Builder::new().stack_size(64 << 10).spawn(|| loop {
                std::thread::park()
            });
            if t.is_err() {
                break;
            }
            spawned += 1;
        }
        fdk::Response::ok(spawned.to_string())
    });
}
