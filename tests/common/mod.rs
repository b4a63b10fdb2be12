//! What the department tests share: the commands they send most.

use crate::department::{AddManager, Create, DataContext};

/// Creates a live department of tenant `tenant-1`.
pub fn create(name: &str) -> Create {
    Create {
        tenant_id: "tenant-1".into(),
        name: name.into(),
        description: None,
        data_context: DataContext::Live,
        performed_by: None,
    }
}

/// Adds the manager with this phone.
pub fn manager(phone: &str) -> AddManager {
    AddManager {
        user_phone: phone.into(),
        performed_by: None,
    }
}
