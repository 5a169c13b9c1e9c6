//! `/admin/content`: every series, episode and article (published,
//! scheduled or draft), and the editor that writes them: a form of the
//! fields a content file's front matter holds and its Markdown. One POST
//! previews (the public page, rendered as it will look), saves a draft, or
//! publishes (at once, or at a time to come); a save made from an older
//! version than the stored one is refused with both shown.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use lectern_actors::content::editor::{self, Checked, Draft, EditError, Intent};
use lectern_actors::content::front_matter::FileKind;
use lectern_actors::content::inventory::{self, Status};
use lectern_actors::content::Slug;
use serde::Deserialize;
use serde_json::{json, Value};
use slog::info;
use time::OffsetDateTime;

use super::{notice, render, when, AdminError, Answer, NoticeQuery};
use crate::http::extract::{see_other, Admin, CsrfForm};
use crate::http::layout::PrivatePage;
use crate::http::pages;
use crate::http::{get_or_head, AppState};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/content", get_or_head().to(list))
        .route("/admin/content/new/{kind}", get_or_head().to(new))
        .route("/admin/content/{kind}/{slug}", get_or_head().to(edit))
        .route("/admin/content/{kind}", web::post().to(submit));
}

const NOTICES: &[(&str, &str)] = &[
    ("published", "Saved and published: visitors see it now."),
    (
        "scheduled",
        "Saved and scheduled: visitors see it from its date on.",
    ),
    ("draft", "Saved as a draft: visitors do not see it."),
    ("listed", "Saved: the series shows as it is now."),
    (
        "unchanged",
        "Nothing differed from the stored version: nothing was changed.",
    ),
];

/// How the pages name a kind, in the singular.
fn kind_name(kind: FileKind) -> &'static str {
    match kind {
        FileKind::Series => "series",
        FileKind::Episode => "episode",
        FileKind::Article => "article",
    }
}

/// The kind a path names (`episodes`, `articles`, `series`).
fn kind_of(raw: &str) -> Result<FileKind, AdminError> {
    editor::kind_of_folder(raw).ok_or_else(|| AdminError::NoSuch {
        what: "kind of content",
        id: raw.chars().take(40).collect(),
    })
}

fn no_such_item(kind: FileKind, slug: &str) -> AdminError {
    AdminError::NoSuch {
        what: kind_name(kind),
        id: slug.chars().take(80).collect(),
    }
}

/// Where a saved item's public page is, once visitors may see it.
fn public_path(kind: FileKind, slug: &str) -> String {
    format!("/{}/{slug}", kind.folder())
}

async fn list(req: HttpRequest, state: web::Data<AppState>, admin: Admin) -> Answer {
    let items = inventory::list(&state.pool).await?;
    let rows: Vec<Value> = items
        .iter()
        .map(|item| {
            json!({
                "kind": item.kind,
                "slug": item.slug,
                "title": item.title,
                "status": item.status.as_str(),
                "published_at": item.published_at.map(when),
            })
        })
        .collect();
    let page = PrivatePage::new("Content", "pages/admin/content", json!({ "items": rows }));
    Ok(render(&req, &state, &admin, page).await)
}

/// What the editor page shows: the item's fields, the version they were
/// made from, and what happened or what is wrong.
struct Editor<'a> {
    kind: FileKind,
    draft: &'a Draft,
    /// The stored version the form edits; empty for a new item.
    revision: &'a str,
    /// Whether the item is stored (its slug is then fixed).
    stored: bool,
    notice: Option<&'a str>,
    errors: Vec<String>,
    /// The newer stored version that refused a save, shown beside the form.
    theirs: Option<&'a Draft>,
}

async fn show(req: &HttpRequest, state: &AppState, admin: &Admin, editor: Editor<'_>) -> Answer {
    let status = if editor.theirs.is_some() {
        StatusCode::CONFLICT
    } else if editor.errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let kind = editor.kind;
    let page = PrivatePage::new(
        if editor.stored { "Edit" } else { "New" },
        "pages/admin/content_edit",
        json!({
            "kind": kind.folder(),
            "kind_name": kind_name(kind),
            "episode": kind == FileKind::Episode,
            "series": kind == FileKind::Series,
            "dated": kind != FileKind::Series,
            "item": editor.draft,
            "revision": editor.revision,
            "stored": editor.stored,
            "public_path": public_path(kind, &editor.draft.slug),
            "notice": editor.notice,
            "errors": editor.errors,
            "theirs": editor.theirs,
        }),
    )
    .status(status);
    Ok(render(req, state, admin, page).await)
}

async fn new(req: HttpRequest, state: web::Data<AppState>, admin: Admin, kind: web::Path<String>) -> Answer {
    let kind = kind_of(&kind)?;
    let draft = Draft {
        draft: true,
        ..Draft::default()
    };
    let editor = Editor {
        kind,
        draft: &draft,
        revision: "",
        stored: false,
        notice: None,
        errors: Vec::new(),
        theirs: None,
    };
    show(&req, &state, &admin, editor).await
}

async fn edit(
    req: HttpRequest,
    state: web::Data<AppState>,
    admin: Admin,
    path: web::Path<(String, String)>,
    query: web::Query<NoticeQuery>,
) -> Answer {
    let (kind, slug) = path.into_inner();
    let kind = kind_of(&kind)?;
    let parsed = Slug::parse(&slug).map_err(|_| no_such_item(kind, &slug))?;
    let (draft, revision) = editor::get_draft(&state.pool, kind, &parsed)
        .await?
        .ok_or_else(|| no_such_item(kind, &slug))?;
    let editor = Editor {
        kind,
        draft: &draft,
        revision: &revision,
        stored: true,
        notice: notice(NOTICES, &query.notice),
        errors: Vec::new(),
        theirs: None,
    };
    show(&req, &state, &admin, editor).await
}

/// The editor's form: the item's fields, the version it was made from,
/// and which button was pressed.
#[derive(Deserialize, Default)]
#[serde(default)]
struct EditForm {
    slug: String,
    title: String,
    summary: String,
    tags: String,
    published_at: String,
    number: String,
    series: String,
    position: String,
    duration: String,
    video: String,
    poster: String,
    /// A checkbox: present when ticked.
    premium: Option<String>,
    body: String,
    revision: String,
    /// `preview`, `draft` or `publish`.
    action: String,
}

impl EditForm {
    /// The fields as the editor's draft; `intent` decides whether it is one.
    fn draft(&self, intent: Intent) -> Draft {
        Draft {
            slug: self.slug.trim().to_owned(),
            title: self.title.clone(),
            summary: self.summary.clone(),
            tags: self.tags.clone(),
            published_at: self.published_at.clone(),
            draft: intent == Intent::Draft,
            number: self.number.clone(),
            series: self.series.clone(),
            position: self.position.clone(),
            duration: self.duration.clone(),
            video: self.video.clone(),
            poster: self.poster.clone(),
            premium: self.premium.is_some(),
            // Browsers send a textarea's line breaks as CR LF.
            body: self.body.replace("\r\n", "\n"),
        }
    }
}

async fn submit(
    req: HttpRequest,
    state: web::Data<AppState>,
    admin: Admin,
    kind: web::Path<String>,
    CsrfForm(form): CsrfForm<EditForm>,
) -> Answer {
    let kind = kind_of(&kind)?;
    let (intent, preview) = match form.action.as_str() {
        "preview" => (Intent::Publish, true),
        "draft" => (Intent::Draft, false),
        "publish" => (Intent::Publish, false),
        _ => return Err(AdminError::BadQuery("press Preview, Save draft or Publish")),
    };
    let draft = form.draft(intent);
    let now = OffsetDateTime::now_utc();
    let options = state.settings.markdown_options();
    let checked = match editor::check(kind, draft.clone(), intent, now, options).await {
        Ok(checked) => checked,
        Err(EditError::Invalid(errors)) => {
            return show(
                &req,
                &state,
                &admin,
                refused(kind, &draft, errors, None, &form.revision),
            )
            .await
        }
        Err(e) => return Err(e.into()),
    };
    if preview {
        let preview = editor::preview(&state.pool, &checked, now).await?;
        return Ok(pages::preview(&state, &preview).await?);
    }
    let admin_id = admin.0.user().id;
    match editor::save(&state.pool, &checked, &form.revision, admin_id).await {
        Ok(saved) => {
            // This node drops the pages now, so that its very next request
            // shows the change; the others hear it from the database.
            state.actors.pages.invalidate(&saved.topics);
            info!(state.log, "content saved"; "item" => checked.item(), "status" => saved.status.as_str(),
                "changed" => saved.changed, "user_id" => admin_id);
            Ok(saved_page(&checked, saved.changed, saved.status))
        }
        Err(EditError::Invalid(errors)) => {
            show(
                &req,
                &state,
                &admin,
                refused(kind, &draft, errors, None, &form.revision),
            )
            .await
        }
        Err(EditError::Stale {
            item,
            current,
            revision,
        }) => {
            let problem = if revision.is_empty() {
                format!("{item} was deleted since this edit began: saving makes it again")
            } else if form.revision.is_empty() {
                format!("there is already an item {item}: its text is below, beside yours")
            } else {
                format!(
                    "{item} was changed by someone else since this edit began: \
                     their version is below, beside yours; nothing was saved"
                )
            };
            let theirs = (!revision.is_empty()).then_some(&*current);
            show(
                &req,
                &state,
                &admin,
                refused(kind, &draft, vec![problem], theirs, &revision),
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

/// The editor again, with what kept `draft` from being saved.
fn refused<'a>(
    kind: FileKind,
    draft: &'a Draft,
    errors: Vec<String>,
    theirs: Option<&'a Draft>,
    revision: &'a str,
) -> Editor<'a> {
    Editor {
        kind,
        draft,
        revision,
        stored: !revision.is_empty(),
        notice: None,
        errors,
        theirs,
    }
}

/// Back to the editor of what was saved, saying where it stands.
fn saved_page(checked: &Checked, changed: bool, status: Status) -> actix_web::HttpResponse {
    let notice = match (changed, status) {
        (false, _) => "unchanged",
        (true, Status::Published) => "published",
        (true, Status::Scheduled) => "scheduled",
        (true, Status::Draft) => "draft",
        (true, Status::Listed) => "listed",
    };
    see_other(&format!(
        "/admin/content/{}/{}?notice={notice}",
        checked.kind().folder(),
        checked.slug()
    ))
}
