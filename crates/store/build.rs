// `sqlx::migrate!` embeds migrations/ at compile time; without this, a migration file added or
// removed is not seen until something else in the crate changes.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
