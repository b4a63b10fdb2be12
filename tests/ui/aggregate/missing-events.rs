use evt::aggregate;

#[derive(Debug, Clone, Default)]
pub struct Department {
    name: String,
}

#[aggregate(stream = "departments")]
impl Department {}

fn main() {}
