//! Email through a real SMTP server (aiosmtpd) and through the file transport.

use std::path::PathBuf;

use std::sync::Arc;

use clarion_dispatch::{
    DispatchError, DkimAlgorithm, DkimKey, DkimSettings, EmailConfig, EmailMessage, EmailSender,
    ListUnsubscribe, Sender, SmtpConfig, TlsMode,
};
use mail_parser::{MessageParser, MimeHeaders};
use secrecy::SecretString;

use crate::peers::{SmtpOptions, SmtpServer, dkimpy_verify, free_port, smtp_config};

fn message(to: &str) -> EmailMessage {
    EmailMessage {
        delivery_id: uuid::Uuid::new_v4().to_string(),
        campaign_id: Some("spring-sale".to_owned()),
        from: "Clarion News <news@shop.example>".to_owned(),
        to: to.to_owned(),
        reply_to: Some("help@shop.example".to_owned()),
        subject: "Grüße zum Frühling – 20 % Rabatt 🌷".to_owned(),
        text: Some("Hallo Jürgen,\nunser Frühlingsangebot wartet.\n".to_owned()),
        html: Some("<p>Hallo <b>Jürgen</b>,</p><p>unser Frühlingsangebot wartet.</p>".to_owned()),
        list_unsubscribe: Some(ListUnsubscribe {
            url: "https://clarion.example/u/abc123".to_owned(),
            mailto: Some("unsubscribe@shop.example?subject=abc123".to_owned()),
            one_click: true,
        }),
        headers: vec![("Precedence".to_owned(), "bulk".to_owned())],
        dkim: None,
        return_path: None,
    }
}

/// The unfolded value of header `name` in the message's header section.
fn raw_header(raw: &str, name: &str) -> Option<String> {
    let prefix = format!("{}:", name.to_ascii_lowercase());
    let headers = raw.split("\r\n\r\n").next().unwrap().replace("\r\n ", " ");
    headers
        .split("\r\n")
        .find(|line| line.to_ascii_lowercase().starts_with(&prefix))
        .map(|line| line[prefix.len()..].trim().to_owned())
}

#[tokio::test]
async fn smtp_delivers_multipart_alternative_with_list_unsubscribe() {
    let server = SmtpServer::start().await;
    let sender = EmailSender::new(&smtp_config(&server)).await.unwrap();
    let email = message("Jürgen Example <juergen@customer.example>");

    let receipt = sender.send(&email).await.unwrap();
    assert!(receipt.detail.starts_with("250"), "{receipt:?}");

    let received = server.received();
    assert_eq!(received.len(), 1);
    let got = &received[0];
    assert_eq!(got.mail_from, "news@shop.example");
    assert_eq!(got.rcpt_tos, ["juergen@customer.example"]);

    let raw = String::from_utf8(got.raw.clone()).unwrap();
    let headers = raw.split("\r\n\r\n").next().unwrap();
    assert!(headers.is_ascii(), "headers must be 7-bit: {headers}");
    assert_eq!(
        raw_header(&raw, "Message-ID").unwrap(),
        format!("<{}@shop.example>", email.delivery_id)
    );
    assert_eq!(
        raw_header(&raw, "List-Unsubscribe").unwrap(),
        "<https://clarion.example/u/abc123>, <mailto:unsubscribe@shop.example?subject=abc123>"
    );
    assert_eq!(
        raw_header(&raw, "List-Unsubscribe-Post").unwrap(),
        "List-Unsubscribe=One-Click"
    );
    assert_eq!(
        raw_header(&raw, "X-Clarion-Delivery").unwrap(),
        email.delivery_id
    );
    assert_eq!(
        raw_header(&raw, "X-Clarion-Campaign").unwrap(),
        "spring-sale"
    );
    assert_eq!(raw_header(&raw, "Precedence").unwrap(), "bulk");

    let parsed = MessageParser::default().parse(&got.raw).unwrap();
    assert_eq!(parsed.subject().unwrap(), email.subject);
    let from = parsed.from().unwrap().first().unwrap();
    assert_eq!(from.name().unwrap(), "Clarion News");
    assert_eq!(from.address().unwrap(), "news@shop.example");
    let to = parsed.to().unwrap().first().unwrap();
    assert_eq!(to.name().unwrap(), "Jürgen Example");
    assert_eq!(
        parsed
            .reply_to()
            .unwrap()
            .first()
            .unwrap()
            .address()
            .unwrap(),
        "help@shop.example"
    );
    assert!(parsed.date().is_some());
    let content_type = parsed.content_type().unwrap();
    assert_eq!(content_type.ctype(), "multipart");
    assert_eq!(content_type.subtype(), Some("alternative"));
    assert_eq!(parsed.text_body.len(), 1);
    assert_eq!(parsed.html_body.len(), 1);
    // MIME text travels with CRLF line ends.
    assert_eq!(
        parsed
            .body_text(0)
            .unwrap()
            .replace("\r\n", "\n")
            .trim_end(),
        email.text.unwrap().trim_end()
    );
    assert_eq!(parsed.body_html(0).unwrap().trim_end(), email.html.unwrap());
}

#[tokio::test]
async fn send_many_delivers_every_message_over_a_small_pool() {
    let server = SmtpServer::start().await;
    let mut config = smtp_config(&server);
    config.smtp.as_mut().unwrap().pool_size = 3;
    let sender = EmailSender::new(&config).await.unwrap();
    let messages: Vec<EmailMessage> = (0..40)
        .map(|i| message(&format!("customer{i}@customer.example")))
        .collect();

    let outcomes = sender.send_many(&messages, 16).await;

    assert_eq!(outcomes.len(), 40);
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    let received = server.received();
    assert_eq!(received.len(), 40);
    let mut recipients: Vec<String> = received
        .iter()
        .flat_map(|got| got.rcpt_tos.clone())
        .collect();
    recipients.sort();
    let mut expected: Vec<String> = (0..40)
        .map(|i| format!("customer{i}@customer.example"))
        .collect();
    expected.sort();
    assert_eq!(recipients, expected);
}

#[tokio::test]
async fn smtp_4xx_is_transient_and_5xx_permanent_for_that_recipient_only() {
    rejections_are_classified(false).await;
}

#[tokio::test]
async fn pipelined_4xx_is_transient_and_5xx_permanent_for_that_recipient_only() {
    rejections_are_classified(true).await;
}

async fn rejections_are_classified(pipelining: bool) {
    let server = SmtpServer::start_with(SmtpOptions {
        pipelining,
        ..SmtpOptions::default()
    })
    .await;
    let mut config = smtp_config(&server);
    // One connection: after each refusal the next message must go through on the same one.
    config.smtp.as_mut().unwrap().pool_size = 1;
    let sender = EmailSender::new(&config).await.unwrap();
    let batch = [
        message("deferred@customer.example"),
        message("first@customer.example"),
        message("rejected@customer.example"),
        message("second@customer.example"),
    ];

    let outcomes = sender.send_many(&batch, 4).await;

    // Refusals of the recipient are bounces carrying the relay's code and text: a soft one
    // (450) is retried, a hard one (550) is not.
    match &outcomes[0] {
        Err(
            error @ DispatchError::Bounced {
                code: 450, text, ..
            },
        ) => {
            assert!(error.is_transient(), "{error:?}");
            assert!(text.contains("Mailbox temporarily unavailable"), "{text}");
        }
        other => panic!("450 must be a soft bounce, got {other:?}"),
    }
    match &outcomes[2] {
        Err(
            error @ DispatchError::Bounced {
                code: 550, text, ..
            },
        ) => {
            assert!(!error.is_transient(), "{error:?}");
            assert!(text.contains("No such user here"), "{text}");
        }
        other => panic!("550 must be a hard bounce, got {other:?}"),
    }
    assert!(outcomes[1].is_ok(), "{:?}", outcomes[1]);
    assert!(outcomes[3].is_ok(), "{:?}", outcomes[3]);
    let mut recipients: Vec<String> = server
        .received()
        .into_iter()
        .flat_map(|got| got.rcpt_tos)
        .collect();
    recipients.sort();
    assert_eq!(
        recipients,
        ["first@customer.example", "second@customer.example"]
    );
}

#[tokio::test]
async fn a_connection_dropped_by_the_relay_is_replaced_without_losing_the_message() {
    let mut server = SmtpServer::start_with(SmtpOptions {
        pipelining: true,
        ..SmtpOptions::default()
    })
    .await;
    let mut config = smtp_config(&server);
    config.smtp.as_mut().unwrap().pool_size = 1;
    let sender = EmailSender::new(&config).await.unwrap();
    sender
        .send(&message("before@customer.example"))
        .await
        .unwrap();

    // The pooled connection dies with the server process.
    server.restart().await;
    let after = sender.send(&message("after@customer.example")).await;

    assert!(after.is_ok(), "{after:?}");
    let mut recipients: Vec<String> = server
        .received()
        .into_iter()
        .flat_map(|got| got.rcpt_tos)
        .collect();
    recipients.sort();
    assert_eq!(
        recipients,
        ["after@customer.example", "before@customer.example"]
    );
}

/// A self-signed certificate for `localhost`, as PEM files in `dir`.
fn certificate(dir: &std::path::Path) -> (PathBuf, PathBuf) {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let certificate = dir.join("relay.crt");
    let key = dir.join("relay.key");
    std::fs::write(&certificate, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    (certificate, key)
}

#[tokio::test]
async fn starttls_delivers_to_a_relay_with_a_trusted_certificate_only() {
    clarion_dispatch::install_crypto_provider();
    let certificates = tempfile::tempdir().unwrap();
    let (certificate, key) = certificate(certificates.path());
    let server = SmtpServer::start_with(SmtpOptions {
        starttls: Some((certificate.clone(), key)),
        ..SmtpOptions::default()
    })
    .await;
    let relay = |root_certificates| EmailConfig {
        smtp: Some(SmtpConfig {
            tls: TlsMode::Starttls,
            root_certificates,
            ..SmtpConfig::plain("localhost", server.port)
        }),
        ..EmailConfig::default()
    };
    let trusting = EmailSender::new(&relay(Some(certificate))).await.unwrap();
    let untrusting = EmailSender::new(&relay(None)).await.unwrap();

    let refused = untrusting.send(&message("nobody@customer.example")).await;
    let sent = trusting.send(&message("someone@customer.example")).await;

    match refused {
        Err(DispatchError::Transient { reason, .. }) => {
            assert!(reason.contains("STARTTLS"), "{reason}");
        }
        other => panic!("an untrusted certificate must fail transiently, got {other:?}"),
    }
    assert!(sent.is_ok(), "{sent:?}");
    let received = server.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].rcpt_tos, ["someone@customer.example"]);
}

#[tokio::test]
async fn implicit_tls_delivers_to_a_relay_with_a_trusted_certificate() {
    clarion_dispatch::install_crypto_provider();
    let certificates = tempfile::tempdir().unwrap();
    let (certificate, key) = certificate(certificates.path());
    let server = SmtpServer::start_with(SmtpOptions {
        implicit_tls: Some((certificate.clone(), key)),
        ..SmtpOptions::default()
    })
    .await;
    let relay = |root_certificates| EmailConfig {
        smtp: Some(SmtpConfig {
            tls: TlsMode::Tls,
            root_certificates,
            ..SmtpConfig::plain("localhost", server.port)
        }),
        ..EmailConfig::default()
    };
    let trusting = EmailSender::new(&relay(Some(certificate))).await.unwrap();
    let untrusting = EmailSender::new(&relay(None)).await.unwrap();

    let refused = untrusting.send(&message("nobody@customer.example")).await;
    let sent = trusting
        .send_many(
            &[message("a@customer.example"), message("b@customer.example")],
            2,
        )
        .await;

    match refused {
        Err(DispatchError::Transient { reason, .. }) => {
            assert!(reason.contains("TLS handshake"), "{reason}");
        }
        other => panic!("an untrusted certificate must fail transiently, got {other:?}"),
    }
    assert!(sent.iter().all(Result::is_ok), "{sent:?}");
    assert_eq!(server.received().len(), 2);
}

#[tokio::test]
async fn authenticates_after_starttls_and_a_refused_login_is_transient() {
    clarion_dispatch::install_crypto_provider();
    let certificates = tempfile::tempdir().unwrap();
    let (certificate, key) = certificate(certificates.path());
    let server = SmtpServer::start_with(SmtpOptions {
        starttls: Some((certificate.clone(), key)),
        auth: Some(("clarion".to_owned(), "s3cret pass".to_owned())),
        ..SmtpOptions::default()
    })
    .await;
    let relay = |password: &str| EmailConfig {
        smtp: Some(SmtpConfig {
            tls: TlsMode::Starttls,
            root_certificates: Some(certificate.clone()),
            username: Some("clarion".to_owned()),
            password: Some(SecretString::from(password.to_owned())),
            ..SmtpConfig::plain("localhost", server.port)
        }),
        ..EmailConfig::default()
    };
    let right = EmailSender::new(&relay("s3cret pass")).await.unwrap();
    let wrong = EmailSender::new(&relay("guess")).await.unwrap();

    let refused = wrong.send(&message("nobody@customer.example")).await;
    let sent = right.send(&message("someone@customer.example")).await;

    // Wrong credentials are the operator's to fix, not the message's: retry, don't dead-letter.
    match refused {
        Err(DispatchError::Transient { reason, .. }) => {
            assert!(reason.contains("authentication"), "{reason}");
            assert!(!reason.contains("guess"), "{reason}");
        }
        other => panic!("a refused login must fail transiently, got {other:?}"),
    }
    assert!(sent.is_ok(), "{sent:?}");
    let received = server.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].rcpt_tos, ["someone@customer.example"]);
}

#[tokio::test]
async fn smtp_server_down_is_transient() {
    let config = EmailConfig {
        smtp: Some(SmtpConfig::plain("127.0.0.1", free_port())),
        ..EmailConfig::default()
    };
    let sender = EmailSender::new(&config).await.unwrap();

    let error = sender
        .send(&message("someone@customer.example"))
        .await
        .unwrap_err();

    assert!(error.is_transient(), "{error:?}");
}

#[tokio::test]
async fn malformed_messages_fail_permanently_before_any_connection() {
    let config = EmailConfig {
        // Nothing listens here: a connection attempt would fail transiently instead.
        smtp: Some(SmtpConfig::plain("127.0.0.1", free_port())),
        ..EmailConfig::default()
    };
    let sender = EmailSender::new(&config).await.unwrap();

    let bad_address = message("not an address");
    let mut bad_header = message("someone@customer.example");
    bad_header.headers = vec![(
        "X-Evil".to_owned(),
        "a\r\nBcc: victim@example.com".to_owned(),
    )];
    let mut bad_id = message("someone@customer.example");
    bad_id.delivery_id = "a b>".to_owned();
    let mut no_body = message("someone@customer.example");
    no_body.text = None;
    no_body.html = None;

    let mut replaced_from = message("someone@customer.example");
    replaced_from.headers = vec![("FROM".to_owned(), "ceo@bank.example".to_owned())];

    for email in [bad_address, bad_header, bad_id, no_body, replaced_from] {
        let error = sender.send(&email).await.unwrap_err();
        assert!(
            matches!(error, DispatchError::Permanent { .. }),
            "{email:?} gave {error:?}"
        );
    }
}

#[tokio::test]
async fn without_a_relay_messages_are_written_as_eml_files() {
    let outbox = tempfile::tempdir().unwrap();
    let dir = outbox.path().join("data/outbox");
    let config = EmailConfig {
        outbox_dir: dir.clone(),
        ..EmailConfig::default()
    };
    let sender = EmailSender::new(&config).await.unwrap();
    let email = message("someone@customer.example");

    let receipt = sender.send(&email).await.unwrap();

    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].extension().unwrap(), "eml");
    assert!(
        receipt.detail.contains(files[0].to_str().unwrap()),
        "{receipt:?}"
    );
    let raw = std::fs::read(&files[0]).unwrap();
    let parsed = MessageParser::default().parse(&raw).unwrap();
    assert_eq!(parsed.subject().unwrap(), email.subject);
    assert_eq!(
        parsed.message_id().unwrap(),
        format!("{}@shop.example", email.delivery_id)
    );
    assert_eq!(parsed.body_html(0).unwrap().trim_end(), email.html.unwrap());
}

/// The DKIM-Signature header of `raw`, unfolded (it may be folded with tabs).
fn dkim_signature(raw: &str) -> String {
    raw_header(&raw.replace("\r\n\t", "\r\n "), "DKIM-Signature").expect("a DKIM-Signature header")
}

/// The header names a signature's `h=` tag lists, in lower case.
fn signed_headers(signature: &str) -> Vec<String> {
    let tags = signature.replace([' ', '\t'], "");
    let h = tags
        .split(';')
        .find_map(|tag| tag.strip_prefix("h="))
        .expect("an h= tag");
    h.split(':').map(str::to_ascii_lowercase).collect()
}

/// Every shape of message Clarion sends: text only, HTML only, both (multipart), each with and
/// without List-Unsubscribe.
fn every_shape() -> Vec<(String, EmailMessage)> {
    let mut shapes = Vec::new();
    for (body, text, html) in [
        ("text", true, false),
        ("html", false, true),
        ("multipart", true, true),
    ] {
        for unsubscribe in [true, false] {
            let mut email = message(&format!("{body}-{unsubscribe}@customer.example"));
            if !text {
                email.text = None;
            }
            if !html {
                email.html = None;
            }
            if !unsubscribe {
                email.list_unsubscribe = None;
            }
            shapes.push((format!("{body}, list-unsubscribe {unsubscribe}"), email));
        }
    }
    shapes
}

/// Sends every shape through aiosmtpd with `key` configured as `[email.dkim]`, and has dkimpy
/// verify each message as the server received it, with the DNS record Clarion shows.
async fn every_shape_verifies_after_the_smtp_server(key: &DkimKey) {
    let server = SmtpServer::start().await;
    let mut config = smtp_config(&server);
    config.dkim = Some(DkimSettings {
        selector: key.selector().to_owned(),
        domain: key.domain().to_owned(),
        algorithm: key.algorithm(),
        private_key: key.private_key().clone(),
    });
    let sender = EmailSender::new(&config).await.unwrap();
    let shapes = every_shape();
    for (_, email) in &shapes {
        sender.send(email).await.unwrap();
    }

    let received = server.received();
    assert_eq!(received.len(), shapes.len());
    for (shape, email) in &shapes {
        let got = received
            .iter()
            .find(|got| got.rcpt_tos == [email.to.clone()])
            .unwrap_or_else(|| panic!("{shape}: not received"));
        let raw = String::from_utf8(got.raw.clone()).unwrap();
        let signature = dkim_signature(&raw);
        let algorithm = match key.algorithm() {
            DkimAlgorithm::Rsa => "a=rsa-sha256",
            DkimAlgorithm::Ed25519 => "a=ed25519-sha256",
        };
        for tag in [algorithm, "d=shop.example", "c=relaxed/relaxed"] {
            assert!(
                signature.contains(tag),
                "{shape}: {tag} missing in {signature}"
            );
        }
        let signed = signed_headers(&signature);
        let mut must_sign = vec!["from", "to", "subject", "message-id", "content-type"];
        if email.list_unsubscribe.is_some() {
            must_sign.extend(["list-unsubscribe", "list-unsubscribe-post"]);
        }
        for name in must_sign {
            assert!(
                signed.iter().any(|h| h == name),
                "{shape}: {name} not signed: {signed:?}"
            );
        }

        let verdict = dkimpy_verify(&got.raw, &key.dns_name(), &key.dns_value());
        assert!(
            verdict.verified,
            "{shape}: dkimpy refused the signature:\n{}\n{raw}",
            verdict.log
        );
        let looked_up: Vec<&str> = verdict
            .looked_up
            .iter()
            .map(|n| n.trim_end_matches('.'))
            .collect();
        assert_eq!(looked_up, [key.dns_name()], "{shape}");

        // The verifier can fail: a line added to the body breaks the signature, and so does
        // a changed signed header.
        let mut longer = got.raw.clone();
        longer.extend_from_slice(b"added by a relay\r\n");
        let verdict = dkimpy_verify(&longer, &key.dns_name(), &key.dns_value());
        assert!(!verdict.verified, "{shape}: a longer body still verified");
        let readdressed = raw.replacen(
            &format!("To: {}", email.to),
            "To: other@customer.example",
            1,
        );
        assert_ne!(readdressed, raw, "{shape}");
        let verdict = dkimpy_verify(readdressed.as_bytes(), &key.dns_name(), &key.dns_value());
        assert!(!verdict.verified, "{shape}: a changed To still verified");
    }
}

#[tokio::test]
async fn rsa_signatures_verify_with_dkimpy_for_every_shape_of_message() {
    let key = DkimKey::generate("mail2026", "shop.example", DkimAlgorithm::Rsa).unwrap();
    assert!(
        key.dns_value().starts_with("v=DKIM1; k=rsa; p=MII"),
        "{}",
        key.dns_value()
    );
    every_shape_verifies_after_the_smtp_server(&key).await;
}

#[tokio::test]
async fn ed25519_signatures_verify_with_dkimpy_for_every_shape_of_message() {
    let key = DkimKey::generate("ed2026", "shop.example", DkimAlgorithm::Ed25519).unwrap();
    assert!(
        key.dns_value().starts_with("v=DKIM1; k=ed25519; p="),
        "{}",
        key.dns_value()
    );
    every_shape_verifies_after_the_smtp_server(&key).await;
}

#[tokio::test]
async fn a_key_given_with_the_message_signs_instead_of_the_configured_one() {
    let server = SmtpServer::start().await;
    let configured = DkimKey::generate("fallback", "shop.example", DkimAlgorithm::Ed25519).unwrap();
    let own =
        Arc::new(DkimKey::generate("brand", "brand.example", DkimAlgorithm::Ed25519).unwrap());
    let mut config = smtp_config(&server);
    config.dkim = Some(DkimSettings {
        selector: configured.selector().to_owned(),
        domain: configured.domain().to_owned(),
        algorithm: configured.algorithm(),
        private_key: configured.private_key().clone(),
    });
    let sender = EmailSender::new(&config).await.unwrap();
    let mut email = message("someone@customer.example");
    email.from = "Brand <news@brand.example>".to_owned();
    email.dkim = Some(own.clone());

    sender.send(&email).await.unwrap();

    let raw = server.received().remove(0).raw;
    let own_verdict = dkimpy_verify(&raw, &own.dns_name(), &own.dns_value());
    assert!(own_verdict.verified, "{}", own_verdict.log);
    let signature = dkim_signature(&String::from_utf8(raw.clone()).unwrap());
    assert!(signature.contains("d=brand.example"), "{signature}");
    assert!(signature.contains("s=brand"), "{signature}");
    let fallback = dkimpy_verify(&raw, &configured.dns_name(), &configured.dns_value());
    assert!(!fallback.verified);
}

#[tokio::test]
async fn eml_files_of_the_outbox_are_signed_too() {
    let outbox = tempfile::tempdir().unwrap();
    let key = DkimKey::generate("files", "shop.example", DkimAlgorithm::Ed25519).unwrap();
    let config = EmailConfig {
        outbox_dir: outbox.path().to_owned(),
        dkim: Some(DkimSettings {
            selector: key.selector().to_owned(),
            domain: key.domain().to_owned(),
            algorithm: key.algorithm(),
            private_key: key.private_key().clone(),
        }),
        ..EmailConfig::default()
    };
    let sender = EmailSender::new(&config).await.unwrap();

    sender
        .send(&message("someone@customer.example"))
        .await
        .unwrap();

    let file = std::fs::read_dir(outbox.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let verdict = dkimpy_verify(
        &std::fs::read(file).unwrap(),
        &key.dns_name(),
        &key.dns_value(),
    );
    assert!(verdict.verified, "{}", verdict.log);
}

#[tokio::test]
async fn invalid_dkim_key_is_a_configuration_error() {
    let config = EmailConfig {
        outbox_dir: tempfile::tempdir().unwrap().path().to_owned(),
        dkim: Some(DkimSettings {
            selector: "s".to_owned(),
            domain: "shop.example".to_owned(),
            algorithm: DkimAlgorithm::Rsa,
            private_key: SecretString::from("not a pem"),
        }),
        ..EmailConfig::default()
    };

    let error = EmailSender::new(&config).await.unwrap_err();

    assert!(
        matches!(
            error,
            DispatchError::InvalidConfig {
                setting: "email.dkim.private_key",
                ..
            }
        ),
        "{error:?}"
    );
}
