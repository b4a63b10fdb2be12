use evt::event;

#[event]
#[derive(Debug, Clone)]
pub enum PaymentEvent {
    PaymentMade { amount: u64, r#type: String },
}

fn main() {}
