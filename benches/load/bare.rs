//! The ceiling for anything built on actix-web: a bare handler that answers
//! every request with the same pre-compressed bytes from memory, built with
//! Lectern's own actix-web features. `benches/load/run` measures it beside
//! Lectern and nginx in the same run.
//!
//!   cargo run --release --example bare -- 127.0.0.1:4302 page.html.gz

use actix_web::http::header::{HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};
use actix_web::{web, App, HttpResponse, HttpServer};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(address), Some(file)) = (args.next(), args.next()) else {
        eprintln!("usage: bare ADDRESS GZIP_FILE");
        std::process::exit(2);
    };
    let body = web::Bytes::from(std::fs::read(&file)?);
    HttpServer::new(move || {
        let body = body.clone();
        App::new().default_service(web::to(move || {
            let body = body.clone();
            async move {
                HttpResponse::Ok()
                    .insert_header((CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")))
                    .insert_header((CONTENT_ENCODING, HeaderValue::from_static("gzip")))
                    .body(body)
            }
        }))
    })
    .workers(1)
    .backlog(4096)
    .bind(address)?
    .run()
    .await
}
