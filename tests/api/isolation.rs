//! Tenants never see each other: every operator route of the OpenAPI document is called with
//! an admin token of tenant A and the ids of tenant B's resources. New routes are covered as
//! soon as they are in the document; a path parameter this test cannot fill fails it loudly.

use crate::helpers::{Session, TenantFixture, TestApp};
use reqwest::Method;
use serde_json::Value;
use std::collections::BTreeMap;

/// Tenant B with one of each kind of resource, and the strings that must never reach A.
struct Victim {
    tenant: TenantFixture,
    markers: Vec<String>,
}

async fn populate(app: &TestApp) -> Victim {
    let tenant = app.create_tenant("Victim Tenant B").await;
    let editor = app.create_operator(&tenant.admin, "editor").await;
    let (root, etag) = crate::policies::root_policy(app, &tenant.admin).await;
    crate::policies::save_ok(app, &tenant.admin, &root, &etag, crate::policies::seed_settings()).await;
    let child = app
        .post(
            "/api/v1/policies",
            Some(&tenant.admin.access),
            &serde_json::json!({"name": "Victim Child Policy", "set": {"ticketing.events.replication.enabled": false}}),
        )
        .await;
    assert_eq!(child.status(), 201);
    let child: Value = child.json().await.unwrap();
    let device = crate::devices::register(app, &tenant.admin, "VICTIM-HW-0001", "appliance").await;
    // A re-registration waiting for B's operators, so its routes have something to guard.
    let token = crate::devices::enrollment_token(app, &tenant.admin, serde_json::json!({})).await;
    let waiting = crate::devices::register_with(
        app,
        token["token"].as_str().unwrap(),
        "VICTIM-HW-0001",
        "appliance",
    )
    .await;
    assert_eq!(waiting.status(), 202);
    let waiting: Value = waiting.json().await.unwrap();
    // A draft of the root policy (the first listed), rolled out: the routes of drafts and
    // rollouts have B's ids.
    let draft: Value = app
        .post(
            &format!("/api/v1/policies/{root}/drafts"),
            Some(&tenant.admin.access),
            &serde_json::json!({"set": {"ticketing.events.disk_usage.enabled": false}}),
        )
        .await
        .json()
        .await
        .unwrap();
    let rollout = app
        .post(
            &format!("/api/v1/policies/{root}/rollouts"),
            Some(&tenant.admin.access),
            &serde_json::json!({"draft_id": draft["id"], "waves": [{"percent": 100}], "health": {"max_failed_ratio": 0.1}}),
        )
        .await;
    assert_eq!(rollout.status(), 201);
    let markers = vec![
        device.id.clone(),
        "VICTIM-HW-0001".to_owned(),
        device.credential.clone(),
        waiting["credential"].as_str().unwrap().to_owned(),
        crate::policies::SECRET.to_owned(),
        root.clone(),
        child["id"].as_str().unwrap().to_owned(),
        "Victim Child Policy".to_owned(),
        tenant.id.clone(),
        tenant.name.clone(),
        tenant.admin.operator_id.clone(),
        tenant.admin.email.clone(),
        editor.operator_id.clone(),
        editor.email.clone(),
    ];
    Victim { tenant, markers }
}

struct Route {
    method: Method,
    template: String,
    body_example: Option<Value>,
    /// Path parameters with an enumerated schema (an action), filled with their first value.
    enums: BTreeMap<String, String>,
}

fn operator_routes(spec: &Value) -> Vec<Route> {
    let schemas = &spec["components"]["schemas"];
    let mut routes = Vec::new();
    for (template, item) in spec["paths"].as_object().unwrap() {
        if !template.starts_with("/api/v1/") {
            continue;
        }
        for (method, operation) in item.as_object().unwrap() {
            let body_example = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                .as_str()
                .map(|reference| schemas[reference.rsplit('/').next().unwrap()]["example"].clone());
            let enums = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|param| {
                    let schema = &param["schema"];
                    let schema = match schema["$ref"].as_str() {
                        Some(reference) => &schemas[reference.rsplit('/').next().unwrap()],
                        None => schema,
                    };
                    let first = schema["enum"][0].as_str()?;
                    Some((param["name"].as_str()?.to_owned(), first.to_owned()))
                })
                .collect();
            routes.push(Route {
                method: method.to_uppercase().parse().unwrap(),
                template: template.clone(),
                body_example,
                enums,
            });
        }
    }
    routes
}

fn path_params(template: &str) -> Vec<String> {
    template
        .split('/')
        .filter_map(|segment| segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(str::to_owned)
        .collect()
}

/// Fills each path parameter with a value of tenant B's, read from the collection the
/// parameter indexes (`/api/v1/operators` for `/api/v1/operators/{operator_id}`), as B.
async fn victim_path(app: &TestApp, victim: &Victim, route: &Route) -> String {
    let template = route.template.as_str();
    let mut path = template.to_owned();
    for param in path_params(template) {
        let placeholder = format!("{{{param}}}");
        let value = if let Some(value) = route.enums.get(&param) {
            value.clone()
        } else if param == "tenant_id" {
            victim.tenant.id.clone()
        } else {
            let collection = &path[..path.find(&placeholder).unwrap() - 1];
            let listing: Value = app
                .get(collection, &victim.tenant.admin.access)
                .await
                .json()
                .await
                .unwrap();
            let item = &listing["items"][0];
            let short = param.trim_end_matches("_id");
            [item.get(&param), item.get("id"), item.get(short)]
                .into_iter()
                .flatten()
                .find_map(|v| v.as_str().map(str::to_owned).or_else(|| v.as_i64().map(|n| n.to_string())))
                .unwrap_or_else(|| {
                    panic!("no tenant-B value for `{param}` of {template} (listing {collection}): make populate() create one")
                })
        };
        path = path.replace(&placeholder, &value);
    }
    path
}

async fn call(app: &TestApp, route: &Route, path: &str, token: &str) -> (u16, String) {
    let mut request = app
        .request(route.method.clone(), path, Some(token))
        .header("if-match", "*");
    if let Some(example) = &route.body_example {
        request = request.json(example);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn snapshot(app: &TestApp, victim: &Victim, routes: &[Route]) -> BTreeMap<String, String> {
    let mut etags = BTreeMap::new();
    for route in routes
        .iter()
        .filter(|r| r.method == Method::GET && r.template.contains('{'))
    {
        let path = victim_path(app, victim, route).await;
        let token = if route.template.starts_with("/api/v1/tenants/") {
            &app.platform.access
        } else {
            &victim.tenant.admin.access
        };
        let response = app.get(&path, token).await;
        assert_eq!(response.status(), 200, "B cannot read its own {path}");
        let etag = response
            .headers()
            .get("etag")
            .map(|v| v.to_str().unwrap().to_owned());
        etags.insert(path, format!("{etag:?} {}", response.text().await.unwrap()));
    }
    etags
}

#[tokio::test]
async fn tenant_a_can_never_read_or_change_tenant_b() {
    let app = TestApp::spawn().await;
    let victim = populate(&app).await;
    let attacker: Session = app.create_tenant("Attacker Tenant A").await.admin;
    let spec = serde_json::to_value(gmp::http::spec()).unwrap();
    let routes = operator_routes(&spec);
    assert!(routes.len() >= 10, "the walk sees the operator routes");
    let before = snapshot(&app, &victim, &routes).await;

    let mut checked = 0;
    for route in &routes {
        let path = victim_path(&app, &victim, route).await;
        let (status, body) = call(&app, route, &path, &attacker.access).await;
        let what = format!("{} {} as tenant A", route.method, path);
        for marker in &victim.markers {
            assert!(
                !body.contains(marker.as_str()),
                "{what} leaked `{marker}`: {body}"
            );
        }
        if path_params(&route.template).is_empty() {
            assert!(status < 500, "{what}: {status} {body}");
        } else {
            assert!(status == 404 || status == 403, "{what} answered {status}: {body}");
            if status == 403 {
                // Refused for the caller's role, whatever the id: not a hint that B's id exists.
                let random_path =
                    path_params(&route.template)
                        .iter()
                        .fold(route.template.clone(), |p, param| {
                            let value = route
                                .enums
                                .get(param)
                                .cloned()
                                .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
                            p.replace(&format!("{{{param}}}"), &value)
                        });
                let (random_status, _) = call(&app, route, &random_path, &attacker.access).await;
                assert_eq!(random_status, 403, "{what}: 403 depends on the id");
            }
        }
        checked += 1;
    }
    assert_eq!(checked, routes.len());

    // Nothing of B changed.
    assert_eq!(snapshot(&app, &victim, &routes).await, before);
}
