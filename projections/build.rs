//! `sqlx::migrate!` embeds the migrations at build time; make cargo rebuild this crate when one is
//! added or changed (sqlx cannot ask for that itself on stable Rust).
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
