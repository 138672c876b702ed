use loopcheck::loopback_test;
use std::net::TcpListener;

#[loopback_test]
fn string(name: String) {}

#[loopback_test]
fn reference(listener: &TcpListener) {}

#[loopback_test]
fn vector(ports: Vec<u16>) {}

#[loopback_test]
fn array_of_strings(names: [String; 2]) {}

#[loopback_test]
fn tuple(pair: (u16, u16)) {}

fn main() {}
