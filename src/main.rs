fn main() {
    println!("bitsgate {}", env!("CARGO_PKG_VERSION"));
}
