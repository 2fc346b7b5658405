//! The console's pages, rendered on the server with maud: no script.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use maud::{html, Markup, DOCTYPE};
use proto::issuance::v1 as iss;
use proto::registry::v1 as reg;
use proto::revocation::v1 as rev;

use crate::audit::{Filter, Verdict};
use crate::error::ConsoleError;
use crate::i18n::Lang;
use crate::{App, Ctx};

pub const STYLESHEET: &str = "/static/console.css";
const CSS: &str = include_str!("console.css");
const EMERGENCY_APPROVAL_KIND: &str = "emergency-revocation";
/// How long the result page waits for the responder to say `revoked`.
const OCSP_WAIT: Duration = Duration::from_secs(5);

pub fn router(app: App) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/search", get(search))
        .route("/cards/{card_id}", get(card))
        .route("/cards/{card_id}/loss-report", post(loss_report))
        .route("/approvals", get(approvals))
        .route("/approvals/{approval_id}/approve", post(approve))
        .route("/operations", get(operations))
        .route("/audit", get(audit_view))
        .route("/audit/verify", post(audit_verify))
        .route(STYLESHEET, get(stylesheet))
        .layer(axum::middleware::from_fn_with_state(app.clone(), crate::login))
        .with_state(app)
}

type Page = Result<Response, ConsoleError>;

fn answer(lang: Lang, page: Page) -> Response {
    page.unwrap_or_else(|e| e.page(lang))
}

async fn stylesheet() -> Response {
    ([(axum::http::header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response()
}

fn layout(lang: Lang, who: Option<&tls::Caller>, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head {
                meta charset="utf-8";
                title { (title) " — " (lang.t("HPKI 運用コンソール", "HPKI operator console")) }
                link rel="stylesheet" href=(STYLESHEET);
            }
            body {
                header {
                    a href="/" { (lang.t("HPKI 運用コンソール", "HPKI operator console")) }
                    @if let Some(p) = who {
                        span.who { (lang.t("ログイン中: ", "Logged in: ")) strong #whoami { (p.identity) } " (" (p.role) ")" }
                        nav {
                            a href="/approvals" { (lang.t("承認待ち", "Approval queue")) }
                            " · " a href="/operations" { (lang.t("運用状況", "Operations")) }
                            @if p.role == tls::Role::Auditor { " · " a href="/audit" { (lang.t("監査ログ", "Audit log")) } }
                        }
                    }
                    span.lang { a href="?lang=ja" { "日本語" } " | " a href="?lang=en" { "English" } }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

fn page(ctx: &Ctx, title: &str, body: Markup) -> Response {
    axum::response::Html(layout(ctx.lang, Some(&ctx.person), title, body).into_string()).into_response()
}

/// The page of a refusal or failure (see [`ConsoleError::page`]).
pub fn error_page(lang: Lang, status: StatusCode, e: &ConsoleError) -> Markup {
    let title = match e {
        ConsoleError::Login(_) => lang.t("ログインできません", "No console for this certificate"),
        ConsoleError::Field { .. } => lang.t("入力に誤りがあります", "Please correct the form"),
        ConsoleError::SelfApproval(_) => lang.t("ご自身の申請は承認できません", "You cannot approve your own request"),
        ConsoleError::Csrf => lang.t("フォームの有効期限切れです", "The form has expired"),
        _ => lang.t("エラー", "Error"),
    };
    let body = html! {
        p.error #error data-status=(status.as_u16()) {
            @match e {
                ConsoleError::Login(why) => {
                    (lang.t("このコンソールは運用者と監査者の個人クライアント証明書でのみ利用できます。",
                            "The console is for operators and auditors, with their personal client certificate."))
                    br; (why)
                }
                ConsoleError::Field { field, message } => {
                    (lang.t("項目 ", "Field ")) code.field { (field) } ": " (message) br;
                    (lang.t("何も変更されていません。", "Nothing was changed."))
                }
                ConsoleError::SelfApproval(why) => {
                    (lang.t("二者承認: 申請者とは別の運用者が、自分のセッションから承認してください。",
                            "Two-person control: a second, different operator must approve from their own session."))
                    br; (why)
                }
                other => { (other.to_string()) }
            }
        }
        p { a href="/" { (lang.t("トップへ戻る", "Back to the start page")) } }
    };
    layout(lang, None, title, body)
}

fn csrf_field(ctx: &Ctx) -> Markup {
    html! { input type="hidden" name="csrf" value=(ctx.csrf); }
}

fn search_form(ctx: &Ctx, q: &str) -> Markup {
    let l = ctx.lang;
    html! {
        form.search method="get" action="/search" {
            label for="q" { (l.t("カードID・医籍登録番号・保有者ID・氏名（漢字/カナ）", "Card id, licence number, holder id or name (kanji/kana)")) }
            input #q type="text" name="q" value=(q) required;
            button type="submit" { (l.t("検索", "Search")) }
        }
    }
}

async fn home(Extension(ctx): Extension<Ctx>) -> Response {
    let l = ctx.lang;
    page(&ctx, l.t("カード検索", "Find a card"), search_form(&ctx, ""))
}

async fn search(
    State(app): State<App>,
    Extension(ctx): Extension<Ctx>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    answer(ctx.lang, search_page(app, &ctx, params.get("q").map(|q| q.trim()).unwrap_or("")).await)
}

fn holder_name(h: &reg::Holder, lang: Lang) -> String {
    match lang {
        Lang::Ja => format!("{} {}", h.family_name_kanji, h.given_name_kanji),
        Lang::En => format!("{} {}", h.given_name_latin, h.family_name_latin),
    }
}

fn card_state(s: i32, l: Lang) -> &'static str {
    match reg::CardState::try_from(s) {
        Ok(reg::CardState::Pending) => l.t("発行処理中", "pending"),
        Ok(reg::CardState::Active) => l.t("有効", "active"),
        Ok(reg::CardState::Revoked) => l.t("失効", "revoked"),
        _ => "?",
    }
}

async fn find(app: &App, query: &str) -> Result<Vec<reg::ListHolderCardsResponse>, ConsoleError> {
    let req = reg::FindHoldersRequest { query: query.to_owned(), limit: 50 };
    let found = app.registry.clone().find_holders(req).await.map_err(|s| ConsoleError::upstream("registry", s))?;
    Ok(found.into_inner().holders)
}

async fn search_page(app: App, ctx: &Ctx, q: &str) -> Page {
    let l = ctx.lang;
    if q.is_empty() {
        return Err(ConsoleError::field("q", l.t("検索語を入力してください", "enter what to search for")));
    }
    let holders = find(&app, q).await?;
    let body = html! {
        (search_form(ctx, q))
        @if holders.is_empty() {
            p #none { (l.t("該当するカードはありません。", "No card matches.")) }
        } @else {
            table #results {
                thead { tr {
                    th { (l.t("保有者ID", "Holder id")) } th { (l.t("氏名", "Name")) } th { (l.t("カナ", "Kana")) }
                    th { (l.t("医籍登録番号", "Licence number")) } th { (l.t("カード", "Card")) } th { (l.t("状態", "State")) }
                } }
                tbody {
                    @for h in &holders {
                        @let holder = h.holder.clone().unwrap_or_default();
                        @for c in h.cards.iter().filter_map(|c| c.card.as_ref()) {
                            tr {
                                td { (holder.holder_id) }
                                td { (holder.family_name_kanji) " " (holder.given_name_kanji) }
                                td { (holder.family_name_kana) " " (holder.given_name_kana) }
                                td { (holder.licence_number) }
                                td { a.card href={ "/cards/" (c.card_id) } { (c.card_id) } }
                                td { (card_state(c.state, l)) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page(ctx, l.t("検索結果", "Search results"), body))
}

fn unix(t: i64) -> String {
    if t == 0 {
        return String::new();
    }
    let jst = time::UtcOffset::from_hms(9, 0, 0).unwrap_or(time::UtcOffset::UTC);
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|t| t.to_offset(jst).format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

fn reason(r: i32) -> String {
    match reg::RevocationReason::try_from(r) {
        Ok(reg::RevocationReason::Unspecified) | Err(_) => String::new(),
        Ok(r) => r.as_str_name().to_owned(),
    }
}

async fn card(State(app): State<App>, Extension(ctx): Extension<Ctx>, Path(card_id): Path<String>) -> Response {
    answer(ctx.lang, card_page(app, &ctx, &card_id, None).await)
}

/// The holder and card `card_id`, from the registry's search.
async fn lookup_card(
    app: &App,
    card_id: &str,
) -> Result<(reg::ListHolderCardsResponse, reg::GetCardResponse), ConsoleError> {
    for h in find(app, card_id).await? {
        if let Some(c) = h.cards.iter().find(|c| c.card.as_ref().is_some_and(|c| c.card_id == card_id)) {
            let c = c.clone();
            return Ok((h, c));
        }
    }
    Err(ConsoleError::NotFound(format!("card {card_id}")))
}

/// The card page; `form_error` re-shows the loss-report form with the field named.
async fn card_page(app: App, ctx: &Ctx, card_id: &str, form_error: Option<(&str, String)>) -> Page {
    let l = ctx.lang;
    let (holder_cards, view) = lookup_card(&app, card_id).await?;
    let holder = holder_cards.holder.clone().unwrap_or_default();
    let card = view.card.clone().unwrap_or_default();
    let failed = form_error.is_some();
    // The fees come from issuance; the card page stands without them (a loss
    // report must not wait for issuance), saying why they are missing.
    let fee = match app
        .issuance
        .clone()
        .get_card(iss::CardRef { key: Some(iss::card_ref::Key::CardId(card.card_id.clone())) })
        .await
    {
        Ok(details) => details.into_inner().fee.ok_or(NoFees::Missing),
        Err(s) => {
            let e = ConsoleError::upstream("issuance", s);
            tracing::warn!(error = %e, card = %card.card_id, "fees unavailable");
            Err(NoFees::Upstream(e))
        }
    };
    let body = html! {
        section #holder {
            h2 { (l.t("保有者", "Holder")) }
            dl {
                dt { (l.t("氏名", "Name")) } dd #name { (holder.family_name_kanji) " " (holder.given_name_kanji) }
                dt { (l.t("カナ", "Kana")) } dd { (holder.family_name_kana) " " (holder.given_name_kana) }
                dt { (l.t("ローマ字", "Latin")) } dd { (holder_name(&holder, Lang::En)) }
                dt { (l.t("保有者ID", "Holder id")) } dd { (holder.holder_id) }
                dt { (l.t("医籍登録番号", "Licence number")) } dd { (holder.licence_number) }
            }
        }
        section #card {
            h2 { (l.t("カード", "Card")) " " (card.card_id) }
            p { (l.t("状態: ", "State: ")) strong #card-state data-state=(reg::CardState::try_from(card.state).map(|s| s.as_str_name()).unwrap_or("?")) { (card_state(card.state, l)) }
                " · " (l.t("手続: ", "Procedure: ")) (card.procedure) " · " (l.t("作成: ", "Created: ")) (unix(card.created_at_unix)) }
            table #certificates {
                thead { tr {
                    th { (l.t("種別", "Kind")) } th { (l.t("シリアル", "Serial")) } th { (l.t("有効期間開始", "Not before")) }
                    th { (l.t("有効期間終了", "Not after")) } th { (l.t("状態", "Status")) } th { (l.t("失効日時", "Revoked at")) }
                    th { (l.t("失効理由", "Reason")) } th { (l.t("失効者", "Revoked by")) }
                } }
                tbody {
                    @for c in &view.certificates {
                        tr.cert {
                            td { (kind_name(c.kind)) } td.serial { (c.serial) }
                            td { (unix(c.not_before_unix)) } td { (unix(c.not_after_unix)) }
                            td.status { (reg::CertificateState::try_from(c.state).map(|s| s.as_str_name()).unwrap_or("?")) }
                            td { (unix(c.revoked_at_unix)) } td { (reason(c.revocation_reason)) } td { (c.revoked_by) }
                        }
                    }
                }
            }
        }
        (fee_section(l, &fee))
        section #history {
            h2 { (l.t("カード履歴", "Card history")) }
            ol {
                @for c in holder_cards.cards.iter().filter_map(|c| c.card.as_ref()) {
                    li { a href={ "/cards/" (c.card_id) } { (c.card_id) } " — " (c.procedure) " · " (card_state(c.state, l))
                        @if !c.replaces_card_id.is_empty() { " · " (l.t("前カード ", "replaces ")) (c.replaces_card_id) } }
                }
            }
        }
        @if ctx.is_operator() && card.state != reg::CardState::Revoked as i32 {
            (loss_report_form(ctx, &card.card_id, form_error))
        }
    };
    let mut response = page(ctx, l.t("カード詳細", "Card"), body);
    if failed {
        *response.status_mut() = StatusCode::BAD_REQUEST;
    }
    Ok(response)
}

fn yen(amount: i64) -> String {
    let digits = amount.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    format!("{}¥{out}", if amount < 0 { "-" } else { "" })
}

/// Why the card page shows no fees (it stands without them).
enum NoFees {
    /// Issuance answered without a fee.
    Missing,
    Upstream(ConsoleError),
}

fn fee_section(l: Lang, fee: &Result<iss::Fee, NoFees>) -> Markup {
    html! {
        section #fees {
            h2 { (l.t("料金（税抜）", "Fees (before tax)")) }
            @match fee {
                Ok(f) => {
                    dl {
                        dt { (l.t("発行手数料", "Issuance fee")) } dd #fee-issuance data-yen=(f.issuance_fee) { (yen(f.issuance_fee)) }
                        dt { (l.t("年間利用料（1〜5年目）", "Yearly fee (years 1 to 5)")) } dd #fee-yearly data-yen=(f.yearly_fee) { (yen(f.yearly_fee)) }
                        dt { (l.t("更新手数料", "Renewal fee")) } dd #fee-renewal data-yen=(f.renewal_fee) { (yen(f.renewal_fee)) }
                        dt { (l.t("この手続の請求額", "Due for this procedure")) } dd #fee-due data-yen=(f.due_now) { (yen(f.due_now)) }
                    }
                    @if !f.note.is_empty() { p.note { (f.note) } }
                }
                Err(why) => {
                    p.error #fees-unavailable {
                        (l.t("料金を取得できません: ", "Fees unavailable: "))
                        @match why {
                            NoFees::Missing => (l.t("料金の情報がありません", "no fee information")),
                            NoFees::Upstream(e) => (e),
                        }
                    }
                }
            }
        }
    }
}

fn kind_name(k: i32) -> &'static str {
    match reg::CertificateKind::try_from(k) {
        Ok(reg::CertificateKind::Signing) => "signing",
        Ok(reg::CertificateKind::Authentication) => "authentication",
        _ => "?",
    }
}

fn loss_report_form(ctx: &Ctx, card_id: &str, error: Option<(&str, String)>) -> Markup {
    let l = ctx.lang;
    html! {
        section #loss-report {
            h2 { (l.t("紛失届 → 緊急失効", "Loss report → emergency revocation")) }
            @if let Some((field, message)) = &error {
                p.error #error { (l.t("項目 ", "Field ")) code.field { (field) } ": " (message) " — " (l.t("何も変更されていません。", "Nothing was changed.")) }
            }
            form method="post" action={ "/cards/" (card_id) "/loss-report" } {
                (csrf_field(ctx))
                label for="method" { (l.t("本人確認の方法", "How the identity was confirmed")) }
                select #method name="method" {
                    option value="" { (l.t("選択してください", "choose")) }
                    option value=(domain::ConfirmationMethod::Phone.form_name()) { (l.t("電話", "phone")) }
                    option value=(domain::ConfirmationMethod::WrittenReport.form_name()) { (l.t("紛失届（書面）", "written report")) }
                    option value=(domain::ConfirmationMethod::InPerson.form_name()) { (l.t("対面", "in person")) }
                }
                label for="confirmed_by" { (l.t("確認者", "Confirmed by")) }
                input #confirmed_by type="text" name="confirmed_by" value=(ctx.person.identity);
                label for="confirmed_at" { (l.t("確認日時（空欄は現在）", "Confirmed at (empty: now)")) }
                input #confirmed_at type="datetime-local" name="confirmed_at";
                label for="note" { (l.t("メモ", "Note")) }
                textarea #note name="note" {}
                button type="submit" { (l.t("緊急失効を申請", "Revoke the card")) }
            }
        }
    }
}

/// A date and time typed into a form that is none; the page names the field.
#[derive(Debug, thiserror::Error)]
enum FormTimeError {
    #[error("{0:?} is no date and time")]
    NotATime(String),
    #[error("{0:?} is out of range")]
    OutOfRange(String),
    #[error("{0}")]
    Clock(#[from] time::error::Format),
}

/// `confirmed_at` from the form: empty = now; `YYYY-MM-DDTHH:MM[:SS]` in Japan time, or RFC 3339.
fn confirmed_at(text: &str) -> Result<String, FormTimeError> {
    use time::format_description::well_known::Rfc3339;
    let text = text.trim();
    if text.is_empty() {
        return Ok(time::OffsetDateTime::now_utc().format(&Rfc3339)?);
    }
    if time::OffsetDateTime::parse(text, &Rfc3339).is_ok() {
        return Ok(text.to_owned());
    }
    let with_seconds = if text.len() == 16 { format!("{text}:00") } else { text.to_owned() };
    let local = format!("{with_seconds}+09:00");
    time::OffsetDateTime::parse(&local, &Rfc3339).map(|_| local).map_err(|_| FormTimeError::NotATime(text.to_owned()))
}

async fn loss_report(
    State(app): State<App>,
    Extension(ctx): Extension<Ctx>,
    Path(card_id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let l = ctx.lang;
    if let Err(e) = ctx.check_operator_post(form.get("csrf")) {
        return e.page(l);
    }
    let (field, msg) = match loss_request(l, &card_id, &ctx.person.identity, &form) {
        Ok(req) => match app.revocation.clone().emergency_revoke(req).await {
            Ok(r) => return result_page(&app, &ctx, r.into_inner()).await,
            Err(s) if s.code() == tonic::Code::InvalidArgument => {
                let (field, msg) = s.message().split_once(':').unwrap_or(("", s.message()));
                (field.trim().trim_start_matches("confirmation.").to_owned(), msg.trim().to_owned())
            }
            Err(s) => return ConsoleError::upstream("revocation", s).page(l),
        },
        Err((field, msg)) => (field.to_owned(), msg),
    };
    // The card page again, its form showing what to correct.
    answer(l, card_page(app, &ctx, &card_id, Some((&field, msg))).await)
}

/// The emergency revocation a loss-report form asks for, or the form field
/// to correct and why.
fn loss_request(
    l: Lang,
    card_id: &str,
    operator: &str,
    form: &HashMap<String, String>,
) -> Result<rev::EmergencyRevokeRequest, (&'static str, String)> {
    let get = |k: &str| form.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
    // The form's values are the domain's form names ("written_report").
    let method = match get("method").as_str() {
        "" => {
            return Err((
                "method",
                l.t("本人確認の方法を選んでください", "choose how the identity was confirmed").to_owned(),
            ))
        }
        other => match other.parse::<domain::ConfirmationMethod>() {
            Ok(m) => rev::ConfirmationMethod::from(m),
            Err(_) => return Err(("method", format!("{other:?}: {}", l.t("不明な方法です", "unknown method")))),
        },
    };
    let confirmed_by = get("confirmed_by");
    if confirmed_by.is_empty() {
        return Err(("confirmed_by", l.t("確認者を入力してください", "say who confirmed the identity").to_owned()));
    }
    let at = confirmed_at(&get("confirmed_at")).map_err(|e| ("confirmed_at", e.to_string()))?;
    Ok(rev::EmergencyRevokeRequest {
        card: Some(rev::emergency_revoke_request::Card::CardId(card_id.to_owned())),
        confirmation: Some(rev::IdentityConfirmation {
            confirmed_by,
            method: method as i32,
            confirmed_at: at,
            note: get("note"),
        }),
        // The person, relayed: the revocation service audits under them.
        operator: operator.to_owned(),
        note: get("note"),
        compromised_at: String::new(),
    })
}

async fn approvals(State(app): State<App>, Extension(ctx): Extension<Ctx>) -> Response {
    answer(ctx.lang, approvals_page(app, &ctx).await)
}

async fn approvals_page(app: App, ctx: &Ctx) -> Page {
    let l = ctx.lang;
    let req = reg::ListApprovalsRequest { state: reg::ApprovalState::Awaiting as i32 };
    let list = app.registry.clone().list_approvals(req).await.map_err(|s| ConsoleError::upstream("registry", s))?;
    let pending: Vec<reg::Approval> =
        list.into_inner().approvals.into_iter().filter(|a| a.kind == EMERGENCY_APPROVAL_KIND).collect();
    let body = html! {
        @if pending.is_empty() {
            p #none { (l.t("承認待ちの申請はありません。", "Nothing awaits approval.")) }
        } @else {
            table #approvals {
                thead { tr {
                    th { (l.t("申請ID", "Request")) } th { (l.t("カード", "Card")) } th { (l.t("申請者", "Requested by")) }
                    th { (l.t("申請日時", "Requested at")) } th { (l.t("本人確認", "Confirmation")) } th {}
                } }
                tbody {
                    @for a in &pending {
                        @let payload: serde_json::Value = serde_json::from_str(&a.payload_json).unwrap_or_default();
                        tr.approval data-id=(a.approval_id) {
                            td { (a.approval_id) }
                            td { a href={ "/cards/" (a.subject) } { (a.subject) } }
                            td.requested-by { (a.requested_by) }
                            td { (unix(a.created_at_unix)) }
                            td { (payload["confirmation"]["method"].as_str().unwrap_or("")) " / "
                                 (payload["confirmation"]["confirmed_by"].as_str().unwrap_or("")) }
                            td {
                                @if ctx.is_operator() {
                                    form method="post" action={ "/approvals/" (a.approval_id) "/approve" } {
                                        (csrf_field(ctx))
                                        button type="submit" { (l.t("承認して失効", "Approve and revoke")) }
                                    }
                                    @if a.requested_by.eq_ignore_ascii_case(&ctx.person.identity) {
                                        small { (l.t("（ご自身の申請: 別の運用者の承認が必要）", "(your own request: another operator must approve)")) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page(ctx, l.t("承認待ち（二者承認）", "Approval queue (two-person control)"), body))
}

async fn approve(
    State(app): State<App>,
    Extension(ctx): Extension<Ctx>,
    Path(approval_id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let l = ctx.lang;
    if let Err(e) = ctx.check_operator_post(form.get("csrf")) {
        return e.page(l);
    }
    let req = rev::ApproveEmergencyRequest { approval_id, operator: ctx.person.identity.clone() };
    match app.revocation.clone().approve_emergency_revocation(req).await {
        Ok(r) => result_page(&app, &ctx, r.into_inner()).await,
        Err(s) if s.code() == tonic::Code::FailedPrecondition && s.message().contains("two-person control") => {
            ConsoleError::SelfApproval(s.message().to_owned()).page(l)
        }
        Err(s) => ConsoleError::upstream("revocation", s).page(l),
    }
}

/// After EmergencyRevoke or an approval: awaiting approval, or revoked with
/// the CRLs published and the live OCSP answer of each certificate (the
/// answer's signature is not checked here; the tests check it with openssl).
async fn result_page(app: &App, ctx: &Ctx, r: rev::EmergencyRevokeResponse) -> Response {
    let l = ctx.lang;
    if r.state == rev::EmergencyState::AwaitingApproval as i32 {
        let body = html! {
            p #state data-state="AWAITING_APPROVAL" {
                (l.t("二者承認の対象です。別の運用者の承認を待っています。", "Two-person control: waiting for a second operator's approval."))
            }
            p { (l.t("申請ID: ", "Request id: ")) code #approval-id { (r.approval_id) } }
            p { a href="/approvals" { (l.t("承認待ち一覧へ", "To the approval queue")) } }
        };
        let mut response = page(ctx, l.t("承認待ち", "Awaiting approval"), body);
        *response.status_mut() = StatusCode::ACCEPTED;
        return response;
    }
    // Measured from the revocation service's answer: the revocation is recorded by then.
    let revoked = std::time::Instant::now();
    let mut live = Vec::new();
    for c in &r.certificates {
        live.push(app.ocsp.until_revoked(&c.kind, &c.serial, revoked, OCSP_WAIT).await);
    }
    let body = html! {
        p #state data-state="DONE" { strong { (l.t("カードは失効しました。", "The card is revoked.")) } " " (r.card_id) }
        h2 { (l.t("公開したCRL", "CRLs published")) }
        ul #crls {
            @for c in &r.crls {
                li { (c.issuer) ": "
                    @if c.delta_crl_number > 0 { "delta CRL " span.crl-number { (c.delta_crl_number) } ", " }
                    @if c.full_pending { (l.t("完全CRL 公開処理中", "full CRL pending")) }
                    @else { (l.t("完全CRL ", "full CRL ")) span.crl-number { (c.full_crl_number) } }
                }
            }
        }
        p { (l.t("CRL番号: ", "CRL numbers: ")) span #crl-numbers { (r.crl_numbers.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")) } " (" (r.crl_kind) ")" }
        h2 { (l.t("OCSPレスポンダの応答（ライブ）", "Our OCSP responder, asked live")) }
        table #ocsp {
            thead { tr { th { (l.t("種別", "Kind")) } th { (l.t("シリアル", "Serial")) } th { (l.t("失効日時", "Revoked at")) } th { "OCSP" } th { (l.t("失効から応答まで", "After the revocation")) } } }
            tbody {
                @for (c, s) in r.certificates.iter().zip(&live) {
                    tr { td { (c.kind) } td.serial { (c.serial) } td { (c.revoked_at) } td.ocsp-status { (s.status) }
                         td { (s.after.as_millis()) " ms" } }
                }
            }
        }
        p { a href={ "/cards/" (r.card_id) } { (l.t("カード詳細へ", "To the card")) } }
    };
    page(ctx, l.t("緊急失効の結果", "Emergency revocation: result"), body)
}

/// A time of the audit filter: `YYYY-MM-DDTHH:MM[:SS]` in Japan time, or RFC 3339; µs since the epoch.
fn filter_time(text: &str) -> Result<Option<i64>, FormTimeError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let at = confirmed_at(text)?;
    let parsed = time::OffsetDateTime::parse(&at, &time::format_description::well_known::Rfc3339)
        .map_err(|_| FormTimeError::NotATime(text.to_owned()))?;
    i64::try_from(parsed.unix_timestamp_nanos() / 1000)
        .map(Some)
        .map_err(|_| FormTimeError::OutOfRange(text.to_owned()))
}

fn micros(t: i64) -> String {
    let jst = time::UtcOffset::from_hms(9, 0, 0).unwrap_or(time::UtcOffset::UTC);
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:3]");
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(t) * 1000)
        .ok()
        .and_then(|t| t.to_offset(jst).format(&fmt).ok())
        .unwrap_or_default()
}

fn auditor_only(ctx: &Ctx) -> Result<(), ConsoleError> {
    if ctx.is_auditor() {
        Ok(())
    } else {
        Err(ConsoleError::Forbidden(format!("{} is no auditor: the audit log is for auditors", ctx.person.identity)))
    }
}

async fn audit_view(
    State(app): State<App>,
    Extension(ctx): Extension<Ctx>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    answer(ctx.lang, audit_page(&app, &ctx, &params, None).await)
}

async fn audit_verify(
    State(app): State<App>,
    Extension(ctx): Extension<Ctx>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let l = ctx.lang;
    if let Err(e) = auditor_only(&ctx).and_then(|()| ctx.check_csrf(form.get("csrf"))) {
        return e.page(l);
    }
    let verdict = match crate::audit::verify(&app).await {
        Ok(v) => v,
        Err(e) => return e.page(l),
    };
    tracing::info!(auditor = %ctx.person.identity, verdict = verdict.code(), "audit chain verified from the console");
    answer(l, audit_page(&app, &ctx, &HashMap::new(), Some(verdict)).await)
}

fn verdict_section(l: Lang, v: &Verdict) -> Markup {
    html! {
        section #verify-result {
            h2 { (l.t("チェーン検証の結果", "Chain verification")) }
            p #verdict data-verdict=(v.code()) {
                @match v {
                    Verdict::Ok { entries, head, checkpoints, latest_checkpoint, recorded, record_path } => {
                        strong { (l.t("監査チェーンは正常です", "The audit chain verifies")) } ": "
                        span #verified-entries { (entries) } (l.t(" 件, 先頭ハッシュ ", " entries, head ")) code #verified-head { (head) }
                        br; (l.t("署名付きチェックポイント検証済み: ", "Signed checkpoints verified: ")) (checkpoints)
                        @if let Some((at, signs)) = latest_checkpoint {
                            (l.t("（最新: 連番 ", " (the latest at sequence ")) (at) (l.t(" が ", " signs entry ")) (signs) (l.t(" を署名）", ")"))
                        }
                        br; (l.t("外部記録との照合: ", "Matched in the checkpoint record: ")) (recorded) " (" (record_path) ")"
                    }
                    Verdict::Broken { reason, .. } => {
                        strong { (l.t("監査チェーンが壊れています", "The audit chain is BROKEN")) } br; (reason)
                    }
                    Verdict::Incomplete { entries, head, reason } => {
                        strong { (l.t("検証は完了していません", "The verification is incomplete")) } ": "
                        (entries) (l.t(" 件, 先頭ハッシュ ", " entries, head ")) code { (head) } br; (reason)
                    }
                }
            }
        }
    }
}

async fn audit_page(app: &App, ctx: &Ctx, params: &HashMap<String, String>, verdict: Option<Verdict>) -> Page {
    let l = ctx.lang;
    auditor_only(ctx)?;
    let get = |k: &str| params.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
    let (from, to) = (get("from"), get("to"));
    let filter = Filter {
        actor: get("actor"),
        action: get("action"),
        from_micros: filter_time(&from).map_err(|e| ConsoleError::field("from", e.to_string()))?,
        to_micros: filter_time(&to).map_err(|e| ConsoleError::field("to", e.to_string()))?,
    };
    let crate::audit::Listed { entries, matched, scanned, complete } = crate::audit::list(app, &filter).await?;
    let body = html! {
        @if let Some(v) = &verdict { (verdict_section(l, v)) }
        form.verify method="post" action="/audit/verify" {
            (csrf_field(ctx))
            button #verify type="submit" { (l.t("チェーンを検証（hpki-ca audit verify と同じ検証）", "Verify the chain (as hpki-ca audit verify)")) }
        }
        form.filter method="get" action="/audit" {
            label for="actor" { (l.t("実行者", "Actor")) }
            input #actor type="text" name="actor" value=(filter.actor);
            label for="action" { (l.t("操作（前方一致）", "Action (prefix)")) }
            input #action type="text" name="action" value=(filter.action);
            label for="from" { (l.t("開始（日本時間）", "From (Japan time)")) }
            input #from type="datetime-local" name="from" value=(from);
            label for="to" { (l.t("終了（日本時間）", "To (Japan time)")) }
            input #to type="datetime-local" name="to" value=(to);
            button type="submit" { (l.t("絞り込み", "Filter")) }
        }
        p #matched data-count=(matched) {
            (matched) (l.t(" 件が該当", " entries match"))
            @if matched > entries.len() { (l.t("（新しい順に ", " (the newest ")) (entries.len()) (l.t(" 件を表示）", " shown)")) }
        }
        @if !complete {
            p #partial data-scanned=(scanned) {
                (l.t("範囲の新しい方から ", "Only the newest ")) (scanned)
                (l.t(" 件のみ検索しました。それより前は、期間を絞って表示してください。", " entries of the range were searched; narrow the time range to see older ones."))
            }
        }
        table #audit {
            thead { tr {
                th { (l.t("連番", "Sequence")) } th { (l.t("日時（日本時間）", "At (Japan time)")) } th { (l.t("実行者", "Actor")) }
                th { (l.t("操作", "Action")) } th { (l.t("対象", "Subject")) } th { (l.t("詳細", "Detail")) }
            } }
            tbody {
                @for e in &entries {
                    tr.entry data-sequence=(e.sequence) {
                        td { (e.sequence) } td { (micros(e.at_unix_micros)) } td.actor { (e.actor) }
                        td.action { (e.action) } td { (e.subject) }
                        td.detail { code { (e.detail_json.chars().take(300).collect::<String>()) } }
                    }
                }
            }
        }
    };
    Ok(page(ctx, l.t("監査ログ", "Audit log"), body))
}

/// A duration in seconds as `1d 02h 03m 04s` (leading zero units left out), negative with a minus.
fn span(seconds: i64) -> String {
    let sign = if seconds < 0 { "-" } else { "" };
    let s = seconds.unsigned_abs();
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{sign}{d}d {h:02}h {m:02}m {sec:02}s")
    } else if h > 0 {
        format!("{sign}{h}h {m:02}m {sec:02}s")
    } else if m > 0 {
        format!("{sign}{m}m {sec:02}s")
    } else {
        format!("{sign}{sec}s")
    }
}

fn opt_span(s: Option<i64>) -> String {
    s.map(span).unwrap_or_else(|| "?".into())
}

fn percent(p: Option<f64>) -> String {
    p.map(|p| format!("{p:.1} %")).unwrap_or_else(|| "–".into())
}

async fn operations(State(app): State<App>, Extension(ctx): Extension<Ctx>) -> Response {
    use crate::ops;
    let l = ctx.lang;
    let (health, published, served, ocsp) = tokio::join!(
        ops::health(&app),
        ops::published(&app),
        ops::metrics(&app.crl_http_url),
        ops::metrics(&app.ocsp_metrics_url)
    );
    let served = served.map(|samples| ops::served(&samples));
    let rates = ocsp.map(|samples| ops::OcspRates::from_samples(&samples));
    let body = html! {
        section #services {
            h2 { (l.t("サービスの状態（gRPC health）", "Services (gRPC health)")) }
            table #health {
                thead { tr { th { (l.t("サービス", "Service")) } th { (l.t("状態", "Status")) } } }
                tbody {
                    @for h in &health {
                        @match &h.status {
                            Ok(status) => tr.service data-service=(h.service) { td { (h.service) } td.health data-status=(status) { (status) } }
                            Err(why) => tr.service data-service=(h.service) { td { (h.service) } td.health.error data-status="UNREACHABLE" { (why) } }
                        }
                    }
                }
            }
        }
        section #crl-status {
            h2 { (l.t("公開中のCRL（CRL発行サービス）", "Published CRLs (CRL publisher)")) }
            @match &published {
                Err(why) => p.error #crls-unavailable { (why) }
                Ok(list) => {
                    table #crls {
                        thead { tr {
                            th { (l.t("発行者", "Issuer")) } th { (l.t("種別", "Kind")) } th { (l.t("分割", "Partition")) }
                            th { (l.t("CRL番号", "CRL number")) } th { "thisUpdate" } th { (l.t("経過", "Age")) }
                            th { "nextUpdate" } th { (l.t("nextUpdateまで", "To nextUpdate")) }
                        } }
                        tbody {
                            @for c in list {
                                tr.crl data-issuer=(c.crl.issuer) data-next-update=(c.crl.next_update) {
                                    td { (c.crl.issuer) }
                                    td { (crate::ops::kind_name(c.crl.kind)) }
                                    td { (c.crl.partition) }
                                    td.crl-number { (c.crl.crl_number) }
                                    td { (c.crl.this_update) } td.age { (opt_span(c.age)) }
                                    td.next-update { (c.crl.next_update) } td.to-next-update { (opt_span(c.to_next_update)) }
                                }
                            }
                        }
                    }
                }
            }
            h2 { (l.t("配布ポイントのファイル（ARLを含む）", "Served by the distribution point (the ARL included)")) }
            @match &served {
                Err(why) => p.error #served-unavailable { (why) }
                Ok(list) => {
                    table #served {
                        thead { tr { th { (l.t("パス", "Path")) } th { "ARL" } th { (l.t("経過", "Age")) } th { (l.t("nextUpdateまで", "To nextUpdate")) } } }
                        tbody {
                            @for f in list {
                                tr.served data-path=(f.path) data-arl=(f.arl) data-to-next-update=(f.to_next_update.map(|s| s.to_string()).unwrap_or_default()) {
                                    td { (f.path) } td { @if f.arl { "ARL" } }
                                    td { (opt_span(f.age)) } td { (opt_span(f.to_next_update)) }
                                }
                            }
                        }
                    }
                }
            }
        }
        section #ocsp-rates {
            h2 { (l.t("OCSPレスポンダ（起動以降）", "OCSP responder (since it started)")) }
            @match &rates {
                Err(why) => p.error #ocsp-unavailable { (why) }
                Ok(r) => {
                    @let lookups = r.hits + r.misses;
                    dl {
                        dt { (l.t("応答数", "Answers")) } dd #ocsp-responses data-count=(r.responses) { (r.responses) }
                        dt { (l.t("キャッシュヒット率", "Hit rate")) } dd #ocsp-hit-rate { (percent(crate::ops::OcspRates::percent(r.hits, lookups))) " (" (r.hits) ")" }
                        dt { (l.t("キャッシュミス率", "Miss rate")) } dd #ocsp-miss-rate { (percent(crate::ops::OcspRates::percent(r.misses, lookups))) " (" (r.misses) ")" }
                        dt { "tryLater" } dd #ocsp-trylater-rate { (percent(crate::ops::OcspRates::percent(r.try_later, r.responses))) " (" (r.try_later) ")" }
                    }
                }
            }
        }
    };
    page(&ctx, l.t("運用状況", "Operations"), body)
}

#[cfg(test)]
mod tests {
    #[test]
    fn confirmed_at_is_read_as_japan_time() {
        assert_eq!(super::confirmed_at("2026-12-07T10:30").unwrap(), "2026-12-07T10:30:00+09:00");
        assert!(super::confirmed_at("yesterday").is_err());
        assert!(super::confirmed_at("").is_ok());
    }

    #[test]
    fn spans_read_as_days_hours_minutes() {
        assert_eq!(super::span(5), "5s");
        assert_eq!(super::span(3_725), "1h 02m 05s");
        assert_eq!(super::span(-90), "-1m 30s");
        assert_eq!(super::span(90_061), "1d 01h 01m 01s");
    }

    #[test]
    fn yen_has_thousands_separators() {
        assert_eq!(super::yen(0), "¥0");
        assert_eq!(super::yen(5_000), "¥5,000");
        assert_eq!(super::yen(11_000), "¥11,000");
        assert_eq!(super::yen(1_234_567), "¥1,234,567");
    }

    #[test]
    fn filter_times_are_japan_time() {
        // 2026-12-07T00:00+09:00 = 2026-12-06T15:00Z.
        assert_eq!(super::filter_time("2026-12-07T00:00").unwrap(), Some(1_796_569_200_000_000));
        assert_eq!(super::filter_time("").unwrap(), None);
        assert!(super::filter_time("soon").is_err());
    }
}
