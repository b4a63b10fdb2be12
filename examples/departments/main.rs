//! The evtstore guide's department feature, end to end, on the in-memory provider:
//! `cargo run --example departments`.

mod department;
mod projection;

use evt::{Domain, MemoryProvider};

use department::{
    AddManager, Create, DataContext, Delete, DepartmentCommands, DepartmentError, RemoveManager,
    Update,
};
use projection::DepartmentsModel;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let domain = Domain::new(MemoryProvider::new()).with_cache(1_000);
    let departments = DepartmentCommands::new(&domain);
    let model = domain.handler(DepartmentsModel::default());

    let engineering = departments
        .create(
            "department-123",
            Create {
                tenant_id: "tenant-1".into(),
                name: "Engineering".into(),
                description: Some("Engineering team".into()),
                data_context: DataContext::Live,
                performed_by: Some("08012345678".into()),
            },
        )
        .await?;
    println!(
        "created {} at version {}: {:?}",
        engineering.id, engineering.version, engineering.name
    );

    let again = departments
        .create(
            "department-123",
            Create {
                tenant_id: "tenant-1".into(),
                name: "Engineering".into(),
                description: None,
                data_context: DataContext::Live,
                performed_by: None,
            },
        )
        .await;
    assert_eq!(
        again.as_ref().err().and_then(|e| e.rejection()),
        Some(&DepartmentError::AlreadyExists)
    );
    println!("create again: {}", again.unwrap_err());

    let unchanged = departments
        .update(
            "department-123",
            Update {
                name: Some("Engineering".into()),
                description: None,
                performed_by: None,
            },
        )
        .await?;
    println!(
        "update with the same name: still version {}",
        unchanged.version
    );

    for phone in [" 08012345678 ", "08099999999"] {
        let department = departments
            .add_manager(
                "department-123",
                AddManager {
                    user_phone: phone.into(),
                    performed_by: Some("08099999999".into()),
                },
            )
            .await?;
        println!(
            "added manager {phone:?}: managers {:?}, version {}",
            department.managers, department.version
        );
    }
    let duplicate = departments
        .add_manager(
            "department-123",
            AddManager {
                user_phone: "08012345678".into(),
                performed_by: None,
            },
        )
        .await;
    println!("add the same manager again: {}", duplicate.unwrap_err());

    departments
        .remove_manager(
            "department-123",
            RemoveManager {
                user_phone: "08099999999".into(),
                performed_by: None,
            },
        )
        .await?;
    departments
        .update(
            "department-123",
            Update {
                name: Some("Platform Engineering".into()),
                description: None,
                performed_by: None,
            },
        )
        .await?;

    departments
        .create(
            "department-456",
            Create {
                tenant_id: "tenant-1".into(),
                name: "Sales".into(),
                description: None,
                data_context: DataContext::Test,
                performed_by: None,
            },
        )
        .await?;
    let deleted = departments
        .delete(
            "department-456",
            Delete {
                deleted_by: Some("08099999999".into()),
            },
        )
        .await?;
    println!("deleted {} at version {}", deleted.id, deleted.version);

    let handled = model.run_once().await?;
    println!("projection handled {handled} events");

    let read = model.projection();
    let department = read
        .get_by_id("department-123")
        .ok_or("department-123 is not in the read model")?;
    println!(
        "get_by_id(department-123): name {:?}, managers {:?}, context {:?}, updated {}",
        department.name, department.managers, department.data_context, department.updated_at
    );
    let names: Vec<_> = read
        .get_by_tenant("tenant-1")
        .into_iter()
        .map(|d| d.name)
        .collect();
    println!("get_by_tenant(tenant-1), deleted excluded: {names:?}");
    assert_eq!(names, ["Platform Engineering"]);
    Ok(())
}
