//! The planner uses an index for every list query (`EXPLAIN QUERY PLAN` on SQLite;
//! `EXPLAIN` with sequential scans disabled on PostgreSQL, so the plan shows whether an
//! index can serve the query at all, whatever the table's size).

use basis_store::Engine as StoreEngine;
use basis_store::posts::{After, PostQuery, Sort, explain_list};

use crate::helpers::{Engine, TestApp};
use crate::on_both_engines;

on_both_engines!(every_list_query_is_served_by_an_index);

fn queries() -> Vec<(&'static str, PostQuery)> {
    let base = PostQuery {
        author: None,
        category: None,
        tag: None,
        status: "published".into(),
        search: None,
        sort: Sort::NewestFirst,
        after: After::Start,
        limit: 21,
    };
    let with = |f: &dyn Fn(&mut PostQuery)| {
        let mut q = base.clone();
        f(&mut q);
        q
    };
    vec![
        ("newest first", base.clone()),
        (
            "next page",
            with(&|q| {
                q.after = After::Date {
                    created_at: 1,
                    id: 5,
                }
            }),
        ),
        ("oldest first", with(&|q| q.sort = Sort::OldestFirst)),
        ("by title", with(&|q| q.sort = Sort::TitleAsc)),
        (
            "by title, next page",
            with(&|q| {
                q.sort = Sort::TitleDesc;
                q.after = After::Title {
                    title: "m".into(),
                    id: 5,
                };
            }),
        ),
        ("drafts", with(&|q| q.status = "draft".into())),
        ("author", with(&|q| q.author = Some("u1".into()))),
        ("category", with(&|q| q.category = Some("news".into()))),
        ("tag", with(&|q| q.tag = Some("rust".into()))),
        (
            "search",
            with(&|q| {
                q.search = Some("index".into());
                q.sort = Sort::Relevance;
            }),
        ),
    ]
}

async fn every_list_query_is_served_by_an_index(engine: Engine) {
    let app = TestApp::spawn(&engine).await;
    let store = &app.state.store;
    for (name, query) in queries() {
        let plan = explain_list(store, &query).await.expect("a plan");
        assert!(!plan.is_empty(), "{name}: no plan");
        let text = plan.join("\n");
        match store.engine() {
            StoreEngine::Sqlite => {
                // A full scan shows as "SCAN <table>" without an index (FTS5 tables are
                // virtual and searched through their own index).
                let full_scan = plan.iter().any(|line| {
                    line.starts_with("SCAN ")
                        && !line.contains("USING")
                        && !line.contains("VIRTUAL TABLE")
                });
                assert!(!full_scan, "{name} scans a table:\n{text}");
                assert!(
                    text.contains("INDEX") || text.contains("PRIMARY KEY"),
                    "{name}:\n{text}"
                );
            }
            StoreEngine::Postgres => {
                assert!(!text.contains("Seq Scan"), "{name} scans a table:\n{text}");
                assert!(text.contains("Index"), "{name}:\n{text}");
            }
        }
    }
}
