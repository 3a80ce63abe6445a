//! The words of the demo marketplace: kinds of work, the businesses that want it done, and what
//! people write to each other along the way. Fixed lists, so every run writes the same text.

/// A kind of job a client posts.
pub struct Kind {
    /// The title, with `{b}` for the business.
    pub title: &'static str,
    /// What the client asks for (the business's blurb follows it).
    pub description: &'static str,
    pub skills: &'static [&'static str],
    /// A typical fixed budget in US cents.
    pub budget_cents: i64,
    /// A typical hourly range in US cents, for work paid by the hour.
    pub hourly_cents: Option<(i64, i64)>,
    /// What the milestones deliver, in order (a proposal takes the first one, two or three).
    pub deliverables: &'static [&'static str],
}

/// The kind the featured contract is about; the printed search looks for it (`q=postgresql`).
pub const FEATURED_KIND: usize = 3;
/// A word the featured kind's gigs carry, for the printed search.
pub const FEATURED_QUERY: &str = "postgresql";

pub const KINDS: &[Kind] = &[
    Kind {
        title: "Landing page for {b}",
        description: "A fast, accessible one-page site: who we are, opening hours, a contact form and a map. It must score well on Lighthouse and be easy for us to edit.",
        skills: &["html", "css", "web-design"],
        budget_cents: 60_000,
        hourly_cents: None,
        deliverables: &["Wireframe and copy outline", "Built page, responsive", "Launch and handover"],
    },
    Kind {
        title: "Online shop for {b}",
        description: "An online shop with about 120 products, card payments, shipping rules for three zones and stock that follows our till.",
        skills: &["shopify", "ecommerce", "javascript"],
        budget_cents: 320_000,
        hourly_cents: None,
        deliverables: &["Theme and product import", "Checkout, payments and shipping", "Training and launch"],
    },
    Kind {
        title: "Logo and brand kit for {b}",
        description: "A simple, bold logo that works in one colour and at small sizes, with a palette, two typefaces and a one-page usage guide.",
        skills: &["logo-design", "branding", "illustration"],
        budget_cents: 45_000,
        hourly_cents: None,
        deliverables: &["Three logo directions", "Final logo and brand kit"],
    },
    Kind {
        title: "PostgreSQL performance review for {b}",
        description: "Our PostgreSQL database has grown and the slowest pages take seconds. Find and fix the slowest queries, add the right indexes, and explain what you changed and why.",
        skills: &["postgresql", "sql", "performance"],
        budget_cents: 180_000,
        hourly_cents: None,
        deliverables: &["Audit of the slowest queries", "Indexes and query fixes", "Report and monitoring set-up"],
    },
    Kind {
        title: "Booking app (iOS and Android) for {b}",
        description: "A mobile app where customers book and pay for appointments, get reminders and see their history, built with React Native on our existing API.",
        skills: &["react-native", "mobile", "typescript"],
        budget_cents: 900_000,
        hourly_cents: None,
        deliverables: &["Clickable prototype", "Booking and payments", "Store release"],
    },
    Kind {
        title: "Rust inventory service for {b}",
        description: "A small HTTP service in Rust that keeps our stock levels across two warehouses, with a PostgreSQL database, tests, and a Docker image.",
        skills: &["rust", "api", "postgresql"],
        budget_cents: 600_000,
        hourly_cents: None,
        deliverables: &["API design and data model", "Service with tests", "Deployment and docs"],
    },
    Kind {
        title: "Bookkeeping clean-up for {b}",
        description: "Two years of receipts and bank lines to reconcile before the year-end accounts, in Xero. Paid by the hour.",
        skills: &["bookkeeping", "accounting", "xero"],
        budget_cents: 0,
        hourly_cents: Some((3_500, 6_000)),
        deliverables: &["First 20 hours: last year", "Next 20 hours: this year", "Year-end pack"],
    },
    Kind {
        title: "SEO audit for {b}",
        description: "Why do we not show up for our own name? An audit of our site's technical SEO and content, with a prioritised list of fixes.",
        skills: &["seo", "marketing", "analytics"],
        budget_cents: 90_000,
        hourly_cents: None,
        deliverables: &["Technical audit", "Content and keyword plan"],
    },
    Kind {
        title: "Product photos for {b}",
        description: "Photos of 40 products on white and 10 styled shots for the website and social media, retouched and delivered in web sizes.",
        skills: &["photography", "retouching"],
        budget_cents: 120_000,
        hourly_cents: None,
        deliverables: &["Shoot", "Retouched photos"],
    },
    Kind {
        title: "Newsletter writing for {b}",
        description: "A monthly newsletter that people actually open: stories from the team, offers, and one useful tip. Paid by the hour.",
        skills: &["copywriting", "email-marketing"],
        budget_cents: 0,
        hourly_cents: Some((4_000, 7_500)),
        deliverables: &["First issue", "Second and third issues", "Template and guide"],
    },
    Kind {
        title: "Sales dashboard for {b}",
        description: "A dashboard of sales by day, product and channel from our PostgreSQL and Stripe data, refreshed every hour, in Metabase or similar.",
        skills: &["python", "sql", "data-visualization"],
        budget_cents: 250_000,
        hourly_cents: None,
        deliverables: &["Data model and pipeline", "Dashboard", "Alerts and handover"],
    },
    Kind {
        title: "German translation of {b}'s website",
        description: "Translate about 9 000 words of website copy from English into German, keeping the tone friendly, with a second read by a native speaker.",
        skills: &["translation", "german"],
        budget_cents: 110_000,
        hourly_cents: None,
        deliverables: &["First half", "Second half and review"],
    },
    Kind {
        title: "WordPress migration for {b}",
        description: "Move our WordPress site to a new host without downtime, update every plugin, and make it load in under two seconds.",
        skills: &["wordpress", "php", "devops"],
        budget_cents: 70_000,
        hourly_cents: None,
        deliverables: &["Staging copy and plan", "Migration and speed fixes"],
    },
    Kind {
        title: "Explainer video for {b}",
        description: "A 60-second animated video that explains what we do, with a voice-over, for our home page and ads.",
        skills: &["animation", "video-editing", "motion-graphics"],
        budget_cents: 280_000,
        hourly_cents: None,
        deliverables: &["Script and storyboard", "Animation", "Voice-over and final cut"],
    },
    Kind {
        title: "Kubernetes set-up for {b}",
        description: "Move three services from a single VM to a managed Kubernetes cluster with Terraform, CI deploys and alerts. Paid by the hour.",
        skills: &["kubernetes", "terraform", "devops"],
        budget_cents: 0,
        hourly_cents: Some((8_000, 13_000)),
        deliverables: &["Cluster and Terraform", "CI pipelines", "Monitoring and runbook"],
    },
    Kind {
        title: "Support chatbot for {b}",
        description: "A chatbot on our website that answers the forty questions we get every week from our help pages, and hands over to a person when it cannot.",
        skills: &["python", "nlp", "api"],
        budget_cents: 400_000,
        hourly_cents: None,
        deliverables: &["Prototype on our help pages", "Website widget and hand-over", "Tuning after two weeks"],
    },
    Kind {
        title: "Security review of {b}'s web app",
        description: "A penetration test of our customer portal (OWASP top ten, authentication, access control) with a report we can show our customers.",
        skills: &["security", "penetration-testing"],
        budget_cents: 500_000,
        hourly_cents: None,
        deliverables: &["Test and findings", "Retest and final report"],
    },
    Kind {
        title: "Menu illustrations for {b}",
        description: "Twelve small line illustrations for our menu and window, in the style of old botanical prints.",
        skills: &["illustration", "drawing"],
        budget_cents: 55_000,
        hourly_cents: None,
        deliverables: &["Sketches", "Final illustrations"],
    },
    Kind {
        title: "Social media for {b}",
        description: "Plan, write and schedule our Instagram and LinkedIn posts for three months, and report what worked. Paid by the hour.",
        skills: &["social-media", "content-strategy"],
        budget_cents: 0,
        hourly_cents: Some((3_000, 5_500)),
        deliverables: &["Plan and first month", "Second month", "Third month and report"],
    },
    Kind {
        title: "Mobile-friendly redesign for {b}",
        description: "Our site is hard to use on a phone. Redesign the five main pages in Figma, test them with five customers, and hand over a design system.",
        skills: &["ux-design", "figma", "user-research"],
        budget_cents: 220_000,
        hourly_cents: None,
        deliverables: &["Research and wireframes", "Designs and prototype", "Design system"],
    },
    Kind {
        title: "Podcast editing for {b}",
        description: "Edit our weekly 40-minute interview podcast: clean-up, levels, intro and outro, show notes. Paid by the hour.",
        skills: &["audio-editing", "podcasting"],
        budget_cents: 0,
        hourly_cents: Some((2_500, 4_500)),
        deliverables: &["First four episodes", "Next four episodes"],
    },
    Kind {
        title: "Demand forecast for {b}",
        description: "Forecast weekly demand per product from three years of sales so we order the right stock; a notebook we can rerun and a short explanation.",
        skills: &["python", "machine-learning", "forecasting"],
        budget_cents: 350_000,
        hourly_cents: None,
        deliverables: &["Data review and baseline", "Forecast model", "Handover notebook"],
    },
    Kind {
        title: "Stripe payments for {b}",
        description: "Add card payments and subscriptions with Stripe to our Django site, including webhooks, invoices and a customer portal.",
        skills: &["stripe", "python", "django"],
        budget_cents: 240_000,
        hourly_cents: None,
        deliverables: &["One-off payments", "Subscriptions and webhooks", "Customer portal"],
    },
    Kind {
        title: "API documentation for {b}",
        description: "Write the reference and three getting-started guides for our public REST API, from our OpenAPI file and a few calls with our engineers.",
        skills: &["technical-writing", "api", "openapi"],
        budget_cents: 150_000,
        hourly_cents: None,
        deliverables: &["Getting-started guides", "Reference and examples"],
    },
];

/// Who posts: `(name used in titles, a sentence about them)`.
pub const BUSINESSES: &[(&str, &str)] = &[
    (
        "a bakery in Lyon",
        "We are a family bakery with two shops and a café.",
    ),
    (
        "a cycling club",
        "We are a volunteer-run club of 300 riders.",
    ),
    (
        "a dental clinic",
        "We are a clinic of four dentists and a hygienist.",
    ),
    ("a yoga studio", "We run classes every day in two rooms."),
    (
        "a craft brewery",
        "We brew twelve beers and sell to bars and online.",
    ),
    (
        "an architecture studio",
        "We are eight architects working on homes and schools.",
    ),
    (
        "a bike repair shop",
        "We repair and sell second-hand bikes.",
    ),
    ("a law firm", "We are a small firm advising start-ups."),
    (
        "a tea importer",
        "We import tea from small estates in Asia.",
    ),
    (
        "a language school",
        "We teach six languages to adults, online and in person.",
    ),
    (
        "a vintage furniture store",
        "We restore and sell mid-century furniture.",
    ),
    (
        "a climbing gym",
        "We have 2 000 members and run courses for children.",
    ),
    (
        "a veterinary practice",
        "We care for pets and horses in a rural area.",
    ),
    (
        "a ramen bar",
        "We are a forty-seat restaurant with a queue at lunch.",
    ),
    ("a recording studio", "We record bands and podcasts."),
    (
        "an independent bookshop",
        "We sell new and used books and host readings.",
    ),
    ("a flower shop", "We make bouquets and wedding flowers."),
    ("a travel agency", "We plan walking holidays in the Alps."),
    (
        "a coworking space",
        "We rent desks and meeting rooms to 150 members.",
    ),
    ("a small hotel", "We are a 20-room hotel by the sea."),
    (
        "a charity for reading",
        "We run reading clubs in thirty schools.",
    ),
    (
        "a fintech start-up",
        "We are a team of twelve building invoicing for freelancers.",
    ),
    (
        "a logistics company",
        "We move pallets across Europe with 60 trucks.",
    ),
    (
        "a ceramics studio",
        "We make tableware and teach evening classes.",
    ),
];

pub const COVER_LETTERS: &[&str] = &[
    "I have done this kind of work for clients like you for six years; my portfolio has three similar projects. I can start next week.",
    "Happy to help. I would begin with a short call to agree on the details, then deliver in the milestones below.",
    "This is exactly what I do best. I keep you posted every two days and you see the work as it grows.",
    "I read your brief twice: I would split the work as below so you can check each part before paying for the next.",
    "I am a specialist in this and have references from similar businesses. My plan is below; I am flexible on dates.",
    "I would love to work on this. I have a few questions about your current set-up, but the plan below should hold.",
];

pub const SUBMISSION_NOTES: &[&str] = &[
    "Done: everything described in the milestone is in the link below, with notes on what to check.",
    "Delivered as agreed. I added a short video walking through the result.",
    "Here it is. I kept a list of the choices I made and why; happy to change any of them.",
    "Finished, and tested on the cases we discussed. The files are in the shared folder.",
];

pub const CHANGE_REQUESTS: &[&str] = &[
    "Close, but two of the items we agreed on are missing; see my comments in the document.",
    "Could you make it work on older phones too? It breaks on the small screen.",
    "The tone is not quite us yet: a bit warmer, please, and shorter.",
];

pub const DISPUTE_REASONS: &[&str] = &[
    "The delivery does not match what we agreed: half of the milestone is missing and the freelancer stopped answering.",
    "We disagree on whether the second revision was in scope; we would like the platform to decide.",
    "The work arrived three weeks late and does not run on our systems.",
];

pub const CANCEL_REASONS: &[&str] = &[
    "Our plans changed and we no longer need this work.",
    "The project was put on hold by our board.",
    "I cannot take this on after all; sorry for the trouble.",
];

/// `(rating, text)` a client leaves a freelancer.
pub const CLIENT_REVIEWS: &[(u8, &str)] = &[
    (
        5,
        "Excellent work, clear communication, delivered on time. Would hire again.",
    ),
    (
        5,
        "Understood what we needed better than we did. Highly recommended.",
    ),
    (
        4,
        "Good result and easy to work with; one milestone slipped a little.",
    ),
    (
        3,
        "The work is fine, but it took more back and forth than expected.",
    ),
];

/// `(rating, text)` a freelancer leaves a client.
pub const FREELANCER_REVIEWS: &[(u8, &str)] = &[
    (
        5,
        "A clear brief, quick answers and prompt approvals. A pleasure.",
    ),
    (
        5,
        "Knew what they wanted and gave useful feedback. Would work with them again.",
    ),
    (4, "Friendly and fair; the scope grew a bit along the way."),
];
