//! The ceiling for anything built on actix-web: a bare handler that answers
//! every request with the same pre-compressed bytes from memory, built with
//! Lectern's own actix-web features. `benches/load/run` measures it beside
//! Lectern and nginx in the same run, twice: with only the headers a gzip
//! body needs, and with the very headers Lectern's answer carries (read from
//! a file of `Name: value` lines), so that both send the same bytes. With
//! `append` after the headers file, it appends each header to the response
//! rather than inserting it (`append_header`: an insert hands back what
//! the name held, about 110 instructions a header), as Lectern's cache hits
//! do: `benches/load/profile` counts that one too.
//!
//!   cargo run --release --example bare -- 127.0.0.1:4302 page.html.gz [headers.txt [append]]

use actix_web::http::header::{HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};
use actix_web::{web, App, HttpResponse, HttpServer};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(address), Some(file)) = (args.next(), args.next()) else {
        eprintln!("usage: bare ADDRESS GZIP_FILE [HEADERS_FILE [append]]");
        std::process::exit(2);
    };
    let body = web::Bytes::from(std::fs::read(&file)?);
    let mut headers = vec![
        (CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")),
        (CONTENT_ENCODING, HeaderValue::from_static("gzip")),
    ];
    if let Some(extra) = args.next() {
        headers.clear();
        for line in std::fs::read_to_string(&extra)?.lines() {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            match (
                HeaderName::try_from(name.trim()),
                HeaderValue::from_str(value.trim()),
            ) {
                (Ok(name), Ok(value)) => headers.push((name, value)),
                _ => eprintln!("bare: skipping the header line {line:?}"),
            }
        }
    }
    let append = match args.next().as_deref() {
        None => false,
        Some("append") => true,
        Some(other) => {
            eprintln!("bare: {other:?} is not `append`");
            std::process::exit(2);
        }
    };
    let headers = std::sync::Arc::new(headers);
    HttpServer::new(move || {
        let (body, headers) = (body.clone(), std::sync::Arc::clone(&headers));
        App::new().default_service(web::to(move || {
            let (body, headers) = (body.clone(), std::sync::Arc::clone(&headers));
            async move {
                let mut response = HttpResponse::Ok();
                for (name, value) in headers.iter() {
                    if append {
                        response.append_header((name.clone(), value.clone()));
                    } else {
                        response.insert_header((name.clone(), value.clone()));
                    }
                }
                response.body(body)
            }
        }))
    })
    .workers(1)
    .backlog(4096)
    .bind(address)?
    .run()
    .await
}
