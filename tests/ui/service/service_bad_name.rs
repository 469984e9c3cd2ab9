use cell_sdk::service;

#[service(name = "users/admin")]
pub struct Admin;

fn main() {}
