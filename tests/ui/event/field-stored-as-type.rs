use evt::event;

// `type_` is stored as `type` by serde's camelCase: it would clash with the event's type name.
#[event]
#[derive(Debug, Clone)]
pub enum PaymentEvent {
    PaymentMade { amount: u64, type_: String },
}

fn main() {}
