//! The evtstore guide's department feature, end to end: `cargo run --example departments`.
//!
//! By default on SQLite, in the file `evt-departments.db` (events, bookmarks and the read model;
//! `EVT_SQLITE_PATH` names another file), so that a second run resumes the projection from its
//! bookmark. `EVT_POSTGRES_URL` switches it to PostgreSQL, `EVT_MONGO_URL` to MongoDB.

mod department;
mod projection;
mod read_model;

use evt::{Domain, Metadata, Versioned};
use evt_mongo::MongoProvider;
use evt_postgres::PostgresProvider;
use evt_sqlite::SqliteProvider;

use department::{
    AddManager, Create, DataContext, Delete, Department, DepartmentCommands, DepartmentError,
    RemoveManager, Update,
};
use projection::DepartmentsModel;
use read_model::ReadModel;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The domain and the read model, on the backend the environment names.
async fn backend() -> Result<(Domain, ReadModel), Error> {
    if let Ok(url) = std::env::var("EVT_MONGO_URL") {
        let provider = MongoProvider::connect(&url).await?;
        provider.migrate().await?;
        println!(
            "backend: MongoDB, database `{}`",
            provider.database().name()
        );
        let read_model = ReadModel::Mongo(provider.database().collection("departments"));
        return Ok((
            Domain::new(provider)
                .with_cache(1_000)
                .with_upcasters(department::upcasters()),
            read_model,
        ));
    }
    if let Ok(url) = std::env::var("EVT_POSTGRES_URL") {
        let provider = PostgresProvider::connect(&url).await?;
        provider.migrate().await?;
        println!("backend: PostgreSQL");
        let read_model = ReadModel::postgres(provider.pool().clone()).await?;
        return Ok((
            Domain::new(provider)
                .with_cache(1_000)
                .with_upcasters(department::upcasters()),
            read_model,
        ));
    }
    let path = std::env::var("EVT_SQLITE_PATH").unwrap_or_else(|_| "evt-departments.db".into());
    let provider = SqliteProvider::open(&path).await?;
    provider.migrate().await?;
    println!("backend: SQLite, file `{path}` (EVT_POSTGRES_URL or EVT_MONGO_URL switch it)");
    let read_model = ReadModel::sqlite(provider.pool().clone()).await?;
    Ok((
        Domain::new(provider)
            .with_cache(1_000)
            .with_upcasters(department::upcasters()),
        read_model,
    ))
}

/// An id this run has not used: a persistent store keeps the departments of earlier runs.
async fn unused_id(domain: &Domain, base: &str) -> Result<String, Error> {
    let mut id = base.to_owned();
    for run in 2.. {
        if !domain.load::<Department>(&id).await?.exists() {
            break;
        }
        id = format!("{base}-{run}");
    }
    Ok(id)
}

fn create(name: &str, data_context: DataContext) -> Create {
    Create {
        tenant_id: "tenant-1".into(),
        name: name.into(),
        description: Some(format!("{name} team")),
        data_context,
        performed_by: Some("08012345678".into()),
    }
}

fn show(what: &str, department: &Versioned<Department>) {
    println!(
        "{what}: {} at version {}: name {:?}, managers {:?}",
        department.id, department.version, department.name, department.managers
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let (domain, read_model) = backend().await?;
    let departments = DepartmentCommands::new(&domain);
    let model = domain.handler(DepartmentsModel::new(read_model));

    let id = unused_id(&domain, "department-123").await?;
    show(
        "create",
        &departments
            .create(&id, create("Engineering", DataContext::Live))
            .await?,
    );

    let again = departments
        .create(&id, create("Engineering", DataContext::Live))
        .await;
    assert_eq!(
        again.as_ref().err().and_then(|e| e.rejection()),
        Some(&DepartmentError::AlreadyExists)
    );
    println!("create again: {}", again.unwrap_err());

    let same_name = Update {
        name: Some("Engineering".into()),
        description: None,
        performed_by: None,
    };
    show(
        "update with the same name (no event)",
        &departments.update(&id, same_name).await?,
    );

    // A request's commands carry who asked and the request's id, stored beside their events
    // (not in them) and given to handlers in `meta.metadata`.
    let request = Metadata::new()
        .user("08099999999")
        .correlation_id(format!("request-{id}"));
    let as_admin = DepartmentCommands::new(&domain.with_metadata(request));
    for phone in [" 08012345678 ", "08099999999"] {
        let add = AddManager {
            user_phone: phone.into(),
            performed_by: Some("08099999999".into()),
        };
        show(
            &format!("add manager {phone:?}"),
            &as_admin.add_manager(&id, add).await?,
        );
    }
    let history = domain
        .provider()
        .aggregate_events("departments", &id, 0, 100)
        .await?;
    for event in history.iter().filter(|e| !e.meta.metadata.is_empty()) {
        let metadata = &event.meta.metadata;
        println!(
            "  version {} ({}) by {:?}, correlation id {:?}",
            event.meta.version, event.event_type, metadata.user, metadata.correlation_id
        );
    }
    let twice = AddManager {
        user_phone: "08012345678".into(),
        performed_by: None,
    };
    println!(
        "add the same manager again: {}",
        departments.add_manager(&id, twice).await.unwrap_err()
    );

    let remove = RemoveManager {
        user_phone: "08099999999".into(),
        performed_by: None,
    };
    show(
        "remove manager",
        &departments.remove_manager(&id, remove).await?,
    );
    let rename = Update {
        name: Some("Platform Engineering".into()),
        description: None,
        performed_by: None,
    };
    show("rename", &departments.update(&id, rename).await?);

    let sales = unused_id(&domain, "department-456").await?;
    departments
        .create(&sales, create("Sales", DataContext::Test))
        .await?;
    show(
        "delete",
        &departments
            .delete(
                &sales,
                Delete {
                    deleted_by: Some("08099999999".into()),
                },
            )
            .await?,
    );

    let handled = model.run_once().await?;
    println!("projection `departments-model` handled {handled} new events");

    let read = model.projection();
    let department = read
        .get_by_id(&id)
        .await?
        .ok_or("the department is not in the read model")?;
    println!(
        "get_by_id({id}): name {:?}, managers {:?}, context {:?}, updated {}",
        department.name, department.managers, department.data_context, department.updated_at
    );
    assert_eq!(
        (department.name.as_str(), department.managers.as_slice()),
        (
            "Platform Engineering",
            ["08012345678".to_owned()].as_slice()
        )
    );
    let tenant = read.get_by_tenant("tenant-1").await?;
    let names: Vec<_> = tenant
        .iter()
        .map(|d| format!("{} ({})", d.name, d.department_id))
        .collect();
    println!("get_by_tenant(tenant-1), deleted excluded: {names:?}");
    assert!(tenant.iter().all(|d| !d.deleted) && tenant.iter().any(|d| d.department_id == id));
    Ok(())
}
