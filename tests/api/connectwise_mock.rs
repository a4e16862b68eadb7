//! A stand-in for the ConnectWise cloud, the one part that cannot run here. Its routes, headers
//! and JSON shapes follow `shared/reference/connectwise-manage-openapi.json`; it records every
//! request so tests can assert what the client sent.

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const CODEBASE: &str = "v2025_1/";

/// One request the mock received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub query: HashMap<String, String>,
    pub headers: HashMap<String, String>,
}

/// How the mock answers; tests change it between calls.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Status of API calls (200, 401, 403, 404, 500…).
    pub status: u16,
    /// Answer this many API calls with `429` and this `Retry-After` first.
    pub rate_limited_calls: u32,
    pub retry_after: u64,
    /// Answer this many API calls with `503` first.
    pub server_errors: u32,
    /// Wait this long before answering.
    pub delay: Duration,
    /// Records per page of list endpoints (the mock pages on its own, with `Link` headers).
    pub page_size: usize,
    pub companyinfo_found: bool,
    /// Answer every API call with this body (`200`, JSON), e.g. an oversize one.
    pub raw_answer: Option<Arc<String>>,
    /// With `raw_answer`: every answer links to a next page, without end.
    pub endless: bool,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            status: 200,
            rate_limited_calls: 0,
            retry_after: 1,
            server_errors: 0,
            delay: Duration::ZERO,
            page_size: 2,
            companyinfo_found: true,
            raw_answer: None,
            endless: false,
        }
    }
}

#[derive(Default)]
struct MockState {
    requests: Mutex<Vec<Recorded>>,
    behaviour: Mutex<Behaviour>,
}

pub struct MockConnectWise {
    /// `127.0.0.1:PORT`, usable as a ConnectWise site.
    pub site: String,
    state: Arc<MockState>,
}

impl MockConnectWise {
    pub async fn start() -> Self {
        let state = Arc::new(MockState::default());
        let data = web::Data::from(state.clone());
        let server =
            HttpServer::new(move || App::new().app_data(data.clone()).default_service(web::to(answer)))
                .workers(1)
                .disable_signals()
                .bind("127.0.0.1:0")
                .expect("the mock binds");
        let port = server.addrs()[0].port();
        tokio::spawn(server.run());
        Self {
            site: format!("127.0.0.1:{port}"),
            state,
        }
    }

    pub fn set(&self, change: impl FnOnce(&mut Behaviour)) {
        change(&mut self.state.behaviour.lock().unwrap());
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Requests to the REST API (not the codebase lookup).
    pub fn api_requests(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.contains("/apis/3.0/"))
            .collect()
    }

    pub fn clear(&self) {
        self.state.requests.lock().unwrap().clear();
    }
}

fn companies() -> Vec<Value> {
    (1..=5)
        .map(|i| {
            json!({"id": i, "identifier": format!("Company{i}"), "name": format!("Company {i}"),
                   "status": {"id": 1, "name": "Active"}, "deletedFlag": false, "_info": {}})
        })
        .collect()
}

fn boards() -> Vec<Value> {
    vec![
        json!({"id": 1, "name": "Help Desk", "inactiveFlag": false, "projectFlag": false, "location": {"id": 2, "name": "Main"}}),
        json!({"id": 2, "name": "Escalations", "inactiveFlag": false, "projectFlag": false}),
        json!({"id": 3, "name": "Old Desk", "inactiveFlag": true, "projectFlag": false}),
        json!({"id": 4, "name": "Projects", "inactiveFlag": false, "projectFlag": true}),
    ]
}

fn statuses(board: i64) -> Vec<Value> {
    let status = |id: i64, name: &str, closed: bool| {
        json!({"id": id, "name": name, "board": {"id": board, "name": "Board"}, "sortOrder": id,
               "closedStatus": closed, "inactive": false, "defaultFlag": id % 10 == 0})
    };
    vec![
        status(board * 10, "New", false),
        status(board * 10 + 1, "In Progress", false),
        status(board * 10 + 9, "Closed", true),
    ]
}

fn agreements() -> Vec<Value> {
    vec![
        json!({"id": 71, "name": "Backup Services", "agreementStatus": "Active", "cancelledFlag": false,
                "company": {"id": 1, "identifier": "Company1", "name": "Company 1"}}),
    ]
}

fn additions(agreement: i64) -> Vec<Value> {
    vec![
        json!({"id": 501, "product": {"id": 9, "identifier": "OFFSITE-GB"}, "quantity": 120.5, "agreementId": agreement,
                "billCustomer": "Billable", "description": "Off-site storage (GB)"}),
    ]
}

/// The number a `conditions` clause `name=N` asks for, like ConnectWise's own filter.
fn condition(query: &HashMap<String, String>, name: &str) -> Option<i64> {
    let conditions = query.get("conditions")?;
    conditions.split(" and ").find_map(|clause| {
        let (key, value) = clause.split_once('=')?;
        (key.trim() == name).then(|| value.trim().parse().ok())?
    })
}

/// The records whose `key` equals `wanted`, or all of them when nothing is asked.
fn only(records: Vec<Value>, wanted: Option<i64>, key: impl Fn(&Value) -> &Value) -> Vec<Value> {
    match wanted {
        None => records,
        Some(id) => records
            .into_iter()
            .filter(|r| key(r).as_i64() == Some(id))
            .collect(),
    }
}

async fn answer(req: HttpRequest, state: web::Data<MockState>) -> HttpResponse {
    let query: HashMap<String, String> =
        web::Query::<HashMap<String, String>>::from_query(req.query_string())
            .map(|q| q.into_inner())
            .unwrap_or_default();
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_lowercase(),
                v.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let path = req.path().to_owned();
    state.requests.lock().unwrap().push(Recorded {
        path: path.clone(),
        query: query.clone(),
        headers,
    });
    let behaviour = {
        let mut b = state.behaviour.lock().unwrap();
        let snapshot = b.clone();
        if path.contains("/apis/3.0/") {
            b.rate_limited_calls = b.rate_limited_calls.saturating_sub(1);
            if snapshot.rate_limited_calls == 0 {
                b.server_errors = b.server_errors.saturating_sub(1);
            }
        }
        snapshot
    };
    if !behaviour.delay.is_zero() {
        tokio::time::sleep(behaviour.delay).await;
    }
    if let Some(company) = path.strip_prefix("/login/companyinfo/") {
        return if behaviour.companyinfo_found {
            HttpResponse::Ok().json(
                json!({"CompanyName": company, "Codebase": CODEBASE, "VersionCode": "v2025.1",
                                           "CompanyID": company, "IsCloud": "True"}),
            )
        } else {
            HttpResponse::NotFound().finish()
        };
    }
    let Some(api_path) = path.split_once("/apis/3.0").map(|(_, rest)| rest.to_owned()) else {
        return HttpResponse::NotFound().body("Cannot route. Codebase/company is invalid");
    };
    if behaviour.rate_limited_calls > 0 {
        return HttpResponse::TooManyRequests()
            .insert_header(("Retry-After", behaviour.retry_after.to_string()))
            .json(json!({"code": "TooManyRequests", "message": "slow down", "errors": []}));
    }
    if behaviour.server_errors > 0 {
        return HttpResponse::ServiceUnavailable()
            .json(json!({"code": "Unavailable", "message": "try later", "errors": []}));
    }
    if behaviour.status != 200 {
        let status = actix_web::http::StatusCode::from_u16(behaviour.status).unwrap();
        return HttpResponse::build(status)
            .json(json!({"code": "Error", "message": "refused by the mock", "errors": []}));
    }
    if let Some(body) = &behaviour.raw_answer {
        let mut response = HttpResponse::Ok();
        if behaviour.endless {
            let page: usize = query.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
            let host = req.connection_info().host().to_owned();
            let link = format!("<http://{host}{path}?page={}>; rel=\"next\"", page + 1);
            response.insert_header(("Link", link));
        }
        return response
            .content_type("application/json")
            .body(body.as_str().to_owned());
    }
    let segments: Vec<&str> = api_path.trim_matches('/').split('/').collect();
    let records = match segments.as_slice() {
        ["system", "info"] => {
            return HttpResponse::Ok()
                .content_type("application/vnd.connectwise.com+json; version=2025.8")
                .json(json!({"version": "v2025.1.10431", "isCloud": true, "serverTimeZone": "Eastern Standard Time", "cloudRegion": "NA"}));
        }
        ["company", "companies"] => only(companies(), condition(&query, "id"), |c| &c["id"]),
        ["finance", "agreements"] => only(
            agreements(),
            condition(&query, "company/id"),
            |a| &a["company"]["id"],
        ),
        ["finance", "agreements", id, "additions"] => additions(id.parse().unwrap_or(0)),
        ["service", "boards"] => boards(),
        ["service", "boards", id, "statuses"] => statuses(id.parse().unwrap_or(0)),
        _ => {
            return HttpResponse::NotFound()
                .json(json!({"code": "NotFound", "message": "no such path", "errors": []}));
        }
    };
    // Pages of the mock's own size; a `Link: rel="next"` while more remain.
    let page: usize = query.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let size = behaviour.page_size;
    let slice: Vec<Value> = records
        .iter()
        .skip((page - 1) * size)
        .take(size)
        .cloned()
        .collect();
    let mut response = HttpResponse::Ok();
    if page * size < records.len() {
        let host = req.connection_info().host().to_owned();
        let link = format!(
            "<http://{host}{path}?pageSize={size}&page={}>; rel=\"next\"",
            page + 1
        );
        response.insert_header(("Link", link));
    }
    response.json(slice)
}
