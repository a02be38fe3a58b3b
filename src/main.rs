//! vifnet: one binary for the host side of Xen guest networking.
fn main() {
    std::process::exit(vifnet::cli::main());
}
