use loopcheck::loopback_test;

#[loopback_test]
fn generic<T: Default>(port: u16) {}

#[loopback_test]
fn where_clause(port: u16)
where
    u16: Copy,
{
}

fn main() {}
