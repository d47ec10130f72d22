use std::collections::HashSet;

use clarion_e2e::{clarion, run};
use clarion_testkit::{Backend, TestDb, on_both_backends};

async fn traits_recompute_reports_the_buyers_of_the_online_retail_sample(backend: Backend) {
    let db = TestDb::new(backend).await;
    let sample = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/online_retail_sample.csv"
    );
    let dir = tempfile::tempdir().unwrap();
    let (output, _, stderr) = run(clarion(&db)
        .args(["import", "events", "--preset", "online-retail", sample])
        .arg("--error-report")
        .arg(dir.path().join("r.csv")));
    assert!(output.status.success(), "{stderr}");

    // Customers with at least one invoice that is not a cancellation.
    let mut reader = csv::Reader::from_path(sample).unwrap();
    let buyers: HashSet<String> = reader
        .records()
        .map(|r| r.unwrap())
        .filter(|r| !r[6].is_empty() && !r[0].starts_with('C'))
        .map(|r| r[6].to_string())
        .collect();

    let (output, stdout, stderr) =
        run(clarion(&db).args(["traits", "recompute", "--at", "2010-12-08T00:00:00Z"]));
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("as of 2010-12-08T00:00:00.000Z"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{} contacts with purchases", buyers.len())),
        "{stdout}"
    );
    for segment in ["champions", "cannot_lose", "lost"] {
        assert!(stdout.contains(segment), "{stdout}");
    }
    assert!(stdout.contains("from every event"), "{stdout}");

    // Again: from the stored traits, with the same result; with --full from every event.
    let count = format!("{} contacts with purchases", buyers.len());
    for (extra, how) in [
        (None, "the stored rows caught up"),
        (Some("--full"), "from every event"),
    ] {
        let (output, stdout, stderr) = run(clarion(&db)
            .args(["traits", "recompute", "--at", "2010-12-08T00:00:00Z"])
            .args(extra));
        assert!(output.status.success(), "{stdout}{stderr}");
        assert!(stdout.contains(&count), "{stdout}");
        assert!(stdout.contains(how), "{how}: {stdout}");
    }

    let (output, _, stderr) = run(clarion(&db).args(["traits", "recompute", "--at", "yesterday"]));
    assert!(!output.status.success());
    assert!(stderr.contains("--at \"yesterday\""), "{stderr}");
}

on_both_backends!(traits_recompute_reports_the_buyers_of_the_online_retail_sample);
