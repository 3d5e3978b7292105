//! The sample messages the demo sends: realistic mail written for this project.

/// (sender, recipients, message text with CRLF line ends)
pub fn messages() -> Vec<(&'static str, Vec<&'static str>, String)> {
    vec![
        (
            "alice@partner.example",
            vec!["bob@corp.example"],
            message(
                "Alice Martin <alice@partner.example>",
                "Bob Stone <bob@corp.example>",
                "Quarterly figures",
                "<q3-figures.4711@partner.example>",
                "Hi Bob,\r\n\r\nthe Q3 figures are attached as agreed.\r\n\r\nAlice\r\n",
            ),
        ),
        (
            "orders@shop.example",
            vec!["sales@corp.example", "carol@corp.example"],
            message(
                "Shop Orders <orders@shop.example>",
                "sales@corp.example, carol@corp.example",
                "Order 2024-1187 confirmed",
                "<order-2024-1187@shop.example>",
                "Your order 2024-1187 has been confirmed.\r\n.\r\nLines starting with a dot survive.\r\n",
            ),
        ),
        (
            "newsletter@lists.example",
            vec!["dave@internal.corp.example"],
            message(
                "Lists <newsletter@lists.example>",
                "dave@internal.corp.example",
                "=?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus_dem_Newsletter?=",
                "<news-88@lists.example>",
                "This newsletter goes to an internal address whose policy does not scan.\r\n",
            ),
        ),
    ]
}

fn message(from: &str, to: &str, subject: &str, message_id: &str, body: &str) -> String {
    let date = chrono::Local::now().to_rfc2822();
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {date}\r\nMessage-ID: {message_id}\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}"
    )
}
