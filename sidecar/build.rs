// The migrations are embedded in the binary by `sqlx::migrate!`; rebuild when they change.
fn main() {
    println!("cargo:rerun-if-changed=../sql/migrations");
}
