//! The guide's department rules as given/when/then tests (`evt::testkit`), the typed client, the
//! upcaster of old events, and the projection's `run_once` over every store.

#[path = "../examples/departments/department.rs"]
#[allow(dead_code)]
mod department;
#[path = "../examples/departments/projection.rs"]
#[allow(dead_code)]
mod projection;
#[path = "../examples/departments/read_model.rs"]
#[allow(dead_code)]
mod read_model;

mod common;

use evt::testkit::given;
use evt::{Aggregate, Domain, MemoryProvider, Provider, Versioned};

use common::{create, manager};
use department::{
    DataContext, Delete, Department, DepartmentCommands, DepartmentCreated, DepartmentDeleted,
    DepartmentError, DepartmentEvent, DepartmentManagerAdded, DepartmentManagerRemoved,
    DepartmentUpdated, RemoveManager, Update,
};
use projection::DepartmentsModel;
use read_model::ReadModel;

fn rejection<T>(result: Result<T, evt::CommandError<DepartmentError>>) -> DepartmentError {
    match result {
        Err(evt::CommandError::Rejected { reason, .. }) => reason,
        Err(other) => panic!("expected a rejection, got {other}"),
        Ok(_) => panic!("expected a rejection, the command succeeded"),
    }
}

#[test]
fn fold_applies_department_created() {
    let mut department = <Department as Aggregate>::create();
    let event: DepartmentEvent = DepartmentCreated {
        tenant_id: "tenant-1".into(),
        name: "Engineering".into(),
        description: None,
        data_context: DataContext::Live,
        performed_by: None,
    }
    .into();
    department.fold(event);
    assert_eq!(department.name, "Engineering");
    assert_eq!(department.data_context, DataContext::Live);
}

fn created(name: &str) -> DepartmentEvent {
    DepartmentCreated {
        tenant_id: "tenant-1".into(),
        name: name.into(),
        description: None,
        data_context: DataContext::Live,
        performed_by: None,
    }
    .into()
}

fn manager_added(phone: &str) -> DepartmentEvent {
    DepartmentManagerAdded {
        user_phone: phone.into(),
        performed_by: None,
    }
    .into()
}

fn rename(name: &str) -> Update {
    Update {
        name: Some(name.into()),
        description: None,
        performed_by: None,
    }
}

fn remove(phone: &str) -> RemoveManager {
    RemoveManager {
        user_phone: phone.into(),
        performed_by: None,
    }
}

#[test]
fn create_makes_a_department() {
    let department = given::<Department>([])
        .when(|d| Department::create(d, create("Engineering")))
        .then([created("Engineering")]);
    assert_eq!(
        (department.version, department.name.as_str()),
        (1, "Engineering")
    );
}

#[test]
fn create_fails_when_the_department_exists() {
    given::<Department>([created("Engineering")])
        .when(|d| Department::create(d, create("Other")))
        .then_error(DepartmentError::AlreadyExists);
}

#[test]
fn update_emits_nothing_when_nothing_changes() {
    given::<Department>([created("Engineering")])
        .when(|d| Department::update(d, rename("Engineering")))
        .then_nothing();
    given::<Department>([created("Engineering")])
        .when(|d| Department::update(d, rename("Platform")))
        .then([DepartmentUpdated {
            name: Some("Platform".into()),
            description: None,
            performed_by: None,
        }]);
    given::<Department>([])
        .when(|d| Department::update(d, rename("x")))
        .then_error(DepartmentError::NotFound);
}

#[test]
fn managers_are_normalised_and_unique() {
    given::<Department>([created("Engineering")])
        .when(|d| Department::add_manager(d, manager("  0801 ")))
        .then([manager_added("0801")]);
    given::<Department>([created("Engineering"), manager_added("0801")])
        .when(|d| Department::add_manager(d, manager("0801")))
        .then_error(DepartmentError::AlreadyManager);
    given::<Department>([created("Engineering"), manager_added("0801")])
        .when(|d| Department::remove_manager(d, remove("0802")))
        .then_error(DepartmentError::NotManager);
    let department = given::<Department>([created("Engineering"), manager_added("0801")])
        .when(|d| Department::remove_manager(d, remove(" 0801")))
        .then([DepartmentManagerRemoved {
            user_phone: "0801".into(),
            performed_by: None,
        }]);
    assert!(department.managers.is_empty());
}

#[test]
fn a_deleted_department_refuses_commands() {
    let deleted: DepartmentEvent = DepartmentDeleted {
        deleted_by: Some("0809".into()),
    }
    .into();
    let department = given::<Department>([created("Engineering")])
        .when(|d| {
            Department::delete(
                d,
                Delete {
                    deleted_by: Some("0809".into()),
                },
            )
        })
        .then([deleted.clone()]);
    assert_eq!(
        (department.deleted, department.deleted_by.as_deref()),
        (true, Some("0809"))
    );
    given::<Department>([created("Engineering"), deleted.clone()])
        .when(|d| Department::delete(d, Delete { deleted_by: None }))
        .then_error(DepartmentError::Deleted);
    given::<Department>([created("Engineering"), deleted])
        .when(|d| Department::add_manager(d, manager("0801")))
        .then_error(DepartmentError::Deleted);
}

/// The typed client gives the rules' rejections back as `CommandError::Rejected`.
#[tokio::test]
async fn the_client_returns_rejections() {
    let domain = Domain::new(MemoryProvider::new());
    let departments = DepartmentCommands::new(&domain);
    let department = departments
        .create("d-1", create("Engineering"))
        .await
        .unwrap();
    assert_eq!(
        (department.version, department.name.as_str()),
        (1, "Engineering")
    );
    let again = departments.create("d-1", create("Other")).await;
    assert_eq!(rejection(again), DepartmentError::AlreadyExists);
}

/// A `departmentCreated` stored before it had a `dataContext` loads through the example's
/// upcaster as a live department; without it, the department does not load.
#[tokio::test]
async fn an_old_department_created_loads_through_the_upcaster() {
    let provider: std::sync::Arc<dyn Provider> = std::sync::Arc::new(MemoryProvider::new());
    let old =
        serde_json::json!({"type": "departmentCreated", "tenantId": "tenant-1", "name": "Old"});
    let event = evt::NewEvent::from_value("departmentCreated", &old);
    provider
        .append("departments", "d-old", 0, &[event], None)
        .await
        .unwrap();
    let plain = Domain::from_arc(provider.clone());
    assert!(plain.load::<Department>("d-old").await.is_err());
    let domain = Domain::from_arc(provider).with_upcasters(department::upcasters());
    let department: Versioned<Department> = domain.load("d-old").await.unwrap();
    assert_eq!(
        (department.name.as_str(), department.data_context),
        ("Old", DataContext::Live)
    );
}

/// A projection tested the same way: given events, then the read model.
#[test]
fn the_projection_keeps_managers() {
    let model = given::<Department>([created("Engineering"), manager_added("0801")])
        .id("d-1")
        .project(DepartmentsModel::new(ReadModel::memory()));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let view = runtime.block_on(model.get_by_id("d-1")).unwrap().unwrap();
    assert_eq!(
        (view.name.as_str(), view.managers.as_slice()),
        ("Engineering", ["0801".to_owned()].as_slice())
    );
}

/// Drives the projection and its queries over `domain` and `store`.
async fn projection_answers_queries(domain: Domain, store: ReadModel) {
    let departments = DepartmentCommands::new(&domain);
    let model = domain.handler(DepartmentsModel::new(store));
    departments
        .create("d-1", create("Engineering"))
        .await
        .unwrap();
    departments.create("d-2", create("Sales")).await.unwrap();
    departments
        .add_manager("d-1", manager("0801"))
        .await
        .unwrap();
    departments
        .add_manager("d-1", manager("0802"))
        .await
        .unwrap();
    let remove = RemoveManager {
        user_phone: "0802".into(),
        performed_by: None,
    };
    departments.remove_manager("d-1", remove).await.unwrap();
    let rename = Update {
        name: Some("Platform".into()),
        description: None,
        performed_by: None,
    };
    departments.update("d-1", rename).await.unwrap();
    departments
        .delete(
            "d-2",
            Delete {
                deleted_by: Some("0809".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(model.run_once().await.unwrap(), 7);

    let read = model.projection();
    let platform = read.get_by_id("d-1").await.unwrap().unwrap();
    assert_eq!(
        (platform.name.as_str(), platform.managers.as_slice()),
        ("Platform", ["0801".to_owned()].as_slice())
    );
    assert_eq!(platform.data_context, DataContext::Live);
    assert!(platform.updated_at >= platform.created_at);
    let sales = read.get_by_id("d-2").await.unwrap().unwrap();
    assert_eq!(
        (sales.deleted, sales.deleted_by.as_deref()),
        (true, Some("0809"))
    );
    let live: Vec<_> = read
        .get_by_tenant("tenant-1")
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.department_id)
        .collect();
    assert_eq!(live, ["d-1"]);
    assert_eq!(read.get_by_id("d-3").await.unwrap(), None);

    // Handling the same events again (a crash before the bookmark was stored) changes nothing.
    model.reset().await;
    domain
        .provider()
        .set_position("departments-model", 0)
        .await
        .unwrap();
    assert_eq!(model.run_once().await.unwrap(), 7);
    assert_eq!(read.get_by_id("d-1").await.unwrap().unwrap(), platform);
}

#[tokio::test]
async fn the_projection_answers_queries_in_memory() {
    projection_answers_queries(Domain::new(MemoryProvider::new()), ReadModel::memory()).await;
}

/// The example on MongoDB: events, bookmarks and the read model in one database.
#[tokio::test]
async fn the_projection_answers_queries_on_mongodb() {
    use evt_mongo::MongoProvider;
    use evt_mongo::mongodb::bson::{Document, doc};

    let url = std::env::var("EVT_MONGO_URL").unwrap_or_else(|_| {
        panic!("EVT_MONGO_URL is not set: run `./scripts/test`, which starts a local MongoDB-compatible server")
    });
    let client = evt_mongo::mongodb::Client::with_uri_str(&url)
        .await
        .unwrap();
    let name = format!(
        "evt_departments_{}_{}",
        std::process::id(),
        chrono_now_micros()
    );
    let database = client.database(&name);
    let provider = MongoProvider::new(&database);
    provider.migrate().await.unwrap();
    let store = ReadModel::Mongo(database.collection("departments"));
    projection_answers_queries(Domain::new(provider), store).await;

    let raw = database.collection::<Document>("departments");
    let stored = raw
        .find_one(doc! {"departmentId": "d-1"})
        .await
        .unwrap()
        .unwrap();
    assert!(
        stored.contains_key("_id"),
        "MongoDB keeps its `_id`; the queries leave it out"
    );
    assert_eq!(stored.get_str("tenantId"), Ok("tenant-1"));
    assert_eq!(stored.get_array("managers").unwrap().len(), 1);
    assert_eq!(
        raw.count_documents(doc! {}).await.unwrap(),
        2,
        "one document per department"
    );
    database.drop().await.unwrap();
}

fn chrono_now_micros() -> i64 {
    evt::chrono::Utc::now().timestamp_micros()
}

#[tokio::test]
async fn the_snapshot_is_the_folded_state() {
    let domain = Domain::new(MemoryProvider::new());
    let departments = DepartmentCommands::new(&domain);
    departments
        .create("d-1", create("Engineering"))
        .await
        .unwrap();
    let last = departments
        .add_manager("d-1", manager("0801"))
        .await
        .unwrap();
    let snapshot = domain
        .provider()
        .snapshot("departments", "d-1")
        .await
        .unwrap()
        .expect("`snapshot = \"1\"` stores the state with each append");
    assert_eq!(
        (snapshot.snapshot_version.as_str(), snapshot.version),
        ("1", 2)
    );
    let loaded: Versioned<Department> = domain.load("d-1").await.unwrap();
    assert_eq!(loaded, last);
}

#[tokio::test]
async fn events_are_stored_as_evtstore_stores_them() {
    let domain = Domain::new(MemoryProvider::new());
    DepartmentCommands::new(&domain)
        .create("d-1", create("Engineering"))
        .await
        .unwrap();
    let stored = domain
        .provider()
        .aggregate_events("departments", "d-1", 0, 10)
        .await
        .unwrap();
    assert_eq!(
        stored[0].data.get(),
        r#"{"type":"departmentCreated","tenantId":"tenant-1","name":"Engineering","dataContext":"live"}"#,
        "the type first, then the fields in camelCase, as evtstore writes them"
    );
}

/// The example on PostgreSQL: events, bookmarks and the read model in one database.
#[tokio::test]
async fn the_projection_answers_queries_on_postgres() {
    let url = std::env::var("EVT_POSTGRES_URL").unwrap_or_else(|_| {
        panic!("EVT_POSTGRES_URL is not set: run `./scripts/test`, which starts PostgreSQL")
    });
    let provider = evt_postgres::PostgresProvider::connect(&url).await.unwrap();
    let prefix = format!("evt_departments_{}", chrono_now_micros());
    let provider = provider
        .events_table(&format!("{prefix}_events"))
        .unwrap()
        .bookmarks_table(&format!("{prefix}_bookmarks"))
        .unwrap();
    provider.migrate().await.unwrap();
    let pool = provider.pool().clone();
    sqlx::query("DROP TABLE IF EXISTS departments")
        .execute(&pool)
        .await
        .unwrap();
    let store = ReadModel::postgres(pool.clone()).await.unwrap();
    projection_answers_queries(Domain::new(provider), store).await;
    let managers: String =
        sqlx::query_scalar("SELECT view->>'managers' FROM departments WHERE department_id = 'd-1'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(managers, r#"["0801"]"#);
}

/// The example's default: SQLite, one file holding events, bookmarks and the read model, which a
/// second process (here: a second provider) opens and resumes from.
#[tokio::test]
async fn the_projection_answers_queries_on_sqlite_and_resumes() {
    let path = std::env::temp_dir().join(format!("evt-departments-{}.db", chrono_now_micros()));
    let path = path.to_str().unwrap().to_owned();
    let provider = evt_sqlite::SqliteProvider::open(&path).await.unwrap();
    provider.migrate().await.unwrap();
    let store = ReadModel::sqlite(provider.pool().clone()).await.unwrap();
    projection_answers_queries(Domain::new(provider), store).await;

    let reopened = evt_sqlite::SqliteProvider::open(&path).await.unwrap();
    reopened.migrate().await.unwrap();
    let store = ReadModel::sqlite(reopened.pool().clone()).await.unwrap();
    let domain = Domain::new(reopened);
    let model = domain.handler(DepartmentsModel::new(store));
    assert_eq!(
        model.run_once().await.unwrap(),
        0,
        "resumes from the stored bookmark"
    );
    DepartmentCommands::new(&domain)
        .create("d-3", create("Research"))
        .await
        .unwrap();
    assert_eq!(model.run_once().await.unwrap(), 1);
    let names: Vec<_> = model
        .projection()
        .get_by_tenant("tenant-1")
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names, ["Platform", "Research"]);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{path}{suffix}"));
    }
}
