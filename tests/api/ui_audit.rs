//! The web UI's audit pages over HTTP: the dashboard's field picker with "who overrides / who
//! inherits field F", every dashboard number linking to a device list of exactly that many
//! devices, the device list's state filters, a device's history timeline, and the warnings of
//! a save that went through unchecked.

use crate::devices::{TestDevice, fast_tenant, inherited_report, pull, register, report};
use crate::helpers::{PASSWORD, TestApp};
use crate::policies::{root_policy, save_ok, seed_settings};
use crate::ui_client::{Browser, hidden};
use reqwest::StatusCode;
use serde_json::{Value, json};

const BOARD: &str = "ticketing.events.failed_backup.service_board";
const SITE: &str = "connectwise.site";

/// Pulls, then reports every served field inherited except `changed` (`field → state`).
async fn pull_then_report(app: &TestApp, device: &TestDevice, changed: &[(&str, Value)]) {
    let config: Value = pull(app, device, None).await.json().await.unwrap();
    let mut body = inherited_report(&config);
    for (field, state) in changed {
        body["fields"][*field] = state.clone();
    }
    assert_eq!(report(app, device, &body).await.status(), StatusCode::OK);
}

/// The devices a list page shows, by hostname.
fn hostnames(html: &str) -> Vec<String> {
    html.split("<th scope=\"row\"><a href=\"/devices/")
        .skip(1)
        .map(|rest| {
            rest.split('>')
                .nth(1)
                .unwrap()
                .split('<')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// Every `<a href=… data-count=…>N</a>` of a page: `(href, count name, N)`.
fn counts(html: &str) -> Vec<(String, String, u64)> {
    html.split("<a href=\"")
        .skip(1)
        .filter_map(|rest| {
            let (href, rest) = rest.split_once('"')?;
            let rest = rest.strip_prefix(" data-count=\"")?;
            let (name, rest) = rest.split_once("\">")?;
            let number = rest.split('<').next()?.parse().ok()?;
            Some((href.replace("&amp;", "&"), name.to_owned(), number))
        })
        .collect()
}

/// A tenant whose root policy carries the seed settings with the site locked, and five devices:
/// one applying everything, one overriding the board (allowed), one overriding the locked site
/// (a violation), one failing the board, one that pulled but never reported.
struct Fleet {
    admin: crate::helpers::Session,
    applied: TestDevice,
    overriding: TestDevice,
    violating: TestDevice,
    silent: TestDevice,
}

async fn fleet(app: &TestApp) -> Fleet {
    let tenant = fast_tenant(app, "Acme").await;
    let admin = tenant.admin;
    let (root, etag) = root_policy(app, &admin).await;
    let mut settings = seed_settings();
    settings["lock"] = json!([SITE]);
    save_ok(app, &admin, &root, &etag, settings).await;
    let applied = register(app, &admin, "HW-A", "appliance").await;
    let overriding = register(app, &admin, "HW-B", "vault").await;
    let violating = register(app, &admin, "HW-C", "appliance").await;
    let failing = register(app, &admin, "HW-E", "appliance").await;
    let silent = register(app, &admin, "HW-D", "vault").await;
    pull_then_report(app, &applied, &[]).await;
    let local_board = json!({"state": "overridden", "value": {"id": 77, "name": "Local desk"}});
    pull_then_report(app, &overriding, &[(BOARD, local_board)]).await;
    let rogue = json!({"state": "overridden", "value": "rogue.example"});
    pull_then_report(app, &violating, &[(SITE, rogue)]).await;
    let failed = json!({"state": "failed", "error": "board not found"});
    pull_then_report(app, &failing, &[(BOARD, failed)]).await;
    pull(app, &silent, None).await;
    Fleet {
        admin,
        applied,
        overriding,
        violating,
        silent,
    }
}

#[tokio::test]
async fn the_dashboard_picks_a_field_and_lists_who_overrides_and_who_inherits_it() {
    let app = TestApp::spawn().await;
    let fleet = fleet(&app).await;
    let browser = Browser::sign_in(&app, &fleet.admin.email, PASSWORD).await;

    let dashboard = browser.page("/dashboard").await;
    assert!(dashboard.contains("id=\"field-picker\""), "{dashboard}");
    assert!(dashboard.contains(&format!("<option value=\"{BOARD}\">")));
    assert!(dashboard.contains("formaction=\"/audit/inherited\""));

    // Text that names no field is a search of the catalogue.
    let search = browser.page("/audit/overrides?field=failed_backup").await;
    assert!(
        search.contains(&format!("href=\"/audit/overrides?field={BOARD}\"")),
        "{search}"
    );
    assert!(!search.contains("id=\"field-devices\""));
    let nothing = browser.page("/audit/inherited?field=no-such-thing").await;
    assert!(nothing.contains("No field matches."));

    // Who overrides the board: only the device running a local value, allowed.
    let overrides = browser.page(&format!("/audit/overrides?field={BOARD}")).await;
    assert_eq!(hostnames(&overrides), ["hw-b.local"], "{overrides}");
    assert!(overrides.contains("Local desk") && overrides.contains("Default · v2"));
    assert!(overrides.contains(&format!("href=\"/devices/{}\"", fleet.overriding.id)));
    // Who overrides the locked site: a violation, which the state filter tells apart.
    let site = format!("/audit/overrides?field={SITE}");
    let violations = browser.page(&site).await;
    assert_eq!(hostnames(&violations), ["hw-c.local"]);
    assert!(violations.contains("badge violation") && violations.contains("rogue.example"));
    let only = browser.page(&format!("{site}&state=violation")).await;
    assert_eq!(hostnames(&only), ["hw-c.local"]);
    let allowed = browser.page(&format!("{site}&state=allowed")).await;
    assert!(hostnames(&allowed).is_empty() && allowed.contains("No device."));

    // Who inherits the board: devices served it that applied it or have not reported yet.
    let inherited = format!("/audit/inherited?field={BOARD}");
    let page = browser.page(&inherited).await;
    let mut all = hostnames(&page);
    all.sort();
    assert_eq!(all, ["hw-a.local", "hw-c.local", "hw-d.local"], "{page}");
    assert!(page.contains("Default · v2"));
    let waiting = browser.page(&format!("{inherited}&state=not_reported")).await;
    assert_eq!(hostnames(&waiting), ["hw-d.local"]);
    assert!(waiting.contains("Not reported yet"));
    assert!(waiting.contains(&format!("href=\"/devices/{}\"", fleet.silent.id)));
    let applying = browser.page(&format!("{inherited}&state=inherited")).await;
    let mut applying = hostnames(&applying);
    applying.sort();
    assert_eq!(applying, ["hw-a.local", "hw-c.local"]);
    assert!(
        page.contains(&format!("href=\"/audit/overrides?field={BOARD}\"")),
        "the other question"
    );

    // Read-only pages: a viewer sees them too; signed out, the sign-in page.
    let viewer = app.create_operator(&fleet.admin, "viewer").await;
    let viewer = Browser::sign_in(&app, &viewer.email, PASSWORD).await;
    assert_eq!(hostnames(&viewer.page(&inherited).await).len(), 3);
    let anonymous = app.client.get(app.url(&inherited)).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);

    // Another tenant's operator sees none of these devices.
    let other = app.create_tenant("Other").await;
    let other = Browser::sign_in(&app, &other.admin.email, PASSWORD).await;
    assert!(hostnames(&other.page(&inherited).await).is_empty());
    assert!(hostnames(&other.page(&site).await).is_empty());
}

#[tokio::test]
async fn every_dashboard_number_links_to_a_device_list_of_that_many_devices() {
    let app = TestApp::spawn().await;
    let fleet = fleet(&app).await;
    // Registered, never pulled.
    register(&app, &fleet.admin, "HW-F", "vault").await;
    let browser = Browser::sign_in(&app, &fleet.admin.email, PASSWORD).await;

    let dashboard = browser.page("/dashboard").await;
    assert!(dashboard.contains("id=\"fleet-connectivity\""));
    let links = counts(&dashboard);
    let names: Vec<&str> = links.iter().map(|(_, name, _)| name.as_str()).collect();
    for name in [
        "assigned",
        "direct",
        "in_sync",
        "pending",
        "failed",
        "overridden",
        "violations",
        "stale",
        "online",
        "offline",
        "new",
    ] {
        assert!(names.contains(&name), "{name} is a link: {names:?}");
    }
    let number = |name: &str| {
        links
            .iter()
            .find(|(href, n, _)| n == name && !href.contains("policy="))
            .map(|(_, _, count)| *count)
            .unwrap()
    };
    assert_eq!(number("assigned"), 6);
    assert_eq!(number("failed"), 1);
    assert_eq!(number("violations"), 1);
    assert_eq!(number("new"), 1);
    assert_eq!(
        number("in_sync") + number("pending") + number("failed"),
        number("assigned")
    );
    for (href, name, count) in &links {
        let list = browser.page(href).await;
        assert_eq!(
            hostnames(&list).len() as u64,
            *count,
            "{name} links to {href}: {:?}",
            hostnames(&list)
        );
    }

    // The list's filters by themselves.
    let violating = hostnames(&browser.page("/devices?violations=yes").await);
    assert_eq!(violating, ["hw-c.local"]);
    let mut in_sync = hostnames(&browser.page("/devices?sync=in_sync").await);
    in_sync.sort();
    assert_eq!(
        in_sync,
        ["hw-a.local", "hw-b.local"],
        "an allowed override is in sync"
    );
    let never = hostnames(&browser.page("/devices?connectivity=new").await);
    assert_eq!(never, ["hw-f.local"]);
    let online = browser.page("/devices?connectivity=online&sync=pending").await;
    let mut online = hostnames(&online);
    online.sort();
    assert_eq!(online, ["hw-c.local", "hw-d.local"]);
    let kept = browser.page("/devices?connectivity=stale_or_offline").await;
    assert!(kept.contains("<option value=\"stale_or_offline\" selected>"));
}

#[tokio::test]
async fn a_device_page_shows_its_history_and_a_save_shows_its_warnings() {
    let app = TestApp::spawn().await;
    let fleet = fleet(&app).await;
    let browser = Browser::sign_in(&app, &fleet.admin.email, PASSWORD).await;

    let path = format!("/devices/{}", fleet.violating.id);
    let page = browser.page(&path).await;
    assert!(page.contains("Overridden locally (rogue.example)"));
    // The timeline, newest first, a page at a time: what was reported, then what was served.
    let mut timeline = Vec::new();
    let mut next = Some(path.clone());
    while let Some(url) = next.take() {
        let html = browser.page(&url).await;
        let table = &html[html.find("id=\"history\"").expect("a timeline")..];
        timeline.push(table.split("</table>").next().unwrap().to_owned());
        next = hidden_link(&html, "history-older");
        assert!(timeline.len() < 10, "a bounded history");
    }
    assert!(timeline.len() > 1, "more than a page of history");
    assert!(timeline[0].contains("Reported") && timeline[0].contains("Overridden locally (rogue.example)"));
    assert!(timeline[0].contains("badge violation"), "{}", timeline[0]);
    let all = timeline.concat();
    assert!(
        all.contains("Served") && all.contains("from Default · v2 · locked"),
        "{all}"
    );
    assert!(
        browser
            .page(&format!("/devices/{}", fleet.applied.id))
            .await
            .contains("In sync")
    );

    // The seed site is not a real ConnectWise: the board change goes through unchecked, and
    // the page says so after the save.
    let csrf = hidden(&page, "csrf");
    let version = hidden(&page, "version");
    let saved = browser
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("version", &version),
                ("ticketing.service_ticket_company", "7:Client Seven"),
            ],
        )
        .await;
    assert_eq!(saved.status(), StatusCode::OK);
    let saved = saved.text().await.unwrap();
    assert!(
        saved.contains("id=\"saved\"") && saved.contains("id=\"save-warnings\""),
        "{saved}"
    );
    assert!(saved.contains("not checked against ConnectWise"), "{saved}");

    // A policy of a tenant without ConnectWise credentials: the board is saved unchecked.
    let fresh = app.create_tenant("Fresh").await;
    let (root, _) = root_policy(&app, &fresh.admin).await;
    let browser = Browser::sign_in(&app, &fresh.admin.email, PASSWORD).await;
    let policy = browser.page(&format!("/policies/{root}")).await;
    let saved = browser
        .post(
            &format!("/policies/{root}"),
            &[
                ("csrf", &hidden(&policy, "csrf")),
                ("version", &hidden(&policy, "version")),
                (BOARD, "9:Other Desk"),
                ("ticketing.events.failed_backup.new_status", "91:New"),
                ("ticketing.events.failed_backup.closed_status", "92:Closed"),
            ],
        )
        .await;
    assert_eq!(saved.status(), StatusCode::OK);
    let saved = saved.text().await.unwrap();
    assert!(saved.contains("Saved as version 2"), "{saved}");
    assert!(
        saved.contains("id=\"save-warnings\"") && saved.contains("no ConnectWise credentials"),
        "{saved}"
    );
}

/// The `href` of the link with this id.
fn hidden_link(html: &str, id: &str) -> Option<String> {
    let at = html.find(&format!("id=\"{id}\""))?;
    let start = html[..at].rfind("href=\"")? + "href=\"".len();
    Some(html[start..].split('"').next()?.replace("&amp;", "&"))
}
