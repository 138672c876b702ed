use loopcheck::loopback_test;

struct Server;

impl Server {
    #[loopback_test]
    fn serves(&self, port: u16) {}
}

fn main() {}
