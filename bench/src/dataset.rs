//! A labelled retrieval set for conversational memory: facts about people (names, numbers, dates,
//! places, preferences, instructions) and questions about them, each with exactly one memory
//! that answers it. Deterministic: the same seed always gives the same memories and queries.
//!
//! Query styles, chosen so that neither kind of evidence suffices alone:
//! * `Name`: names the person and paraphrases the attribute ("What does Mia drink in the
//!   morning?" for "Mia prefers oolong tea in the morning."). Every person has a fact of every
//!   kind, so the name is what singles the answer out; embeddings blur names.
//! * `Value`: looks the fact up by a rare value: a number, a date, a proper noun ("Whose
//!   locker is number 4417?"). Embeddings are weak on numbers.
//! * `Paraphrase`: shares (almost) no word with the answer ("Who cannot have dairy?" for
//!   "Omar is lactose intolerant."). Full-text search cannot see it.

/// Deterministic pseudo-random numbers (SplitMix64): no dependency, same output everywhere.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryStyle {
    Name,
    Value,
    Paraphrase,
}

impl QueryStyle {
    pub fn label(self) -> &'static str {
        match self {
            QueryStyle::Name => "name",
            QueryStyle::Value => "value",
            QueryStyle::Paraphrase => "paraphrase",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Memory {
    pub content: String,
    pub category: &'static str,
}

#[derive(Clone, Debug)]
pub struct Query {
    pub text: String,
    pub style: QueryStyle,
    /// Index into `Dataset::memories` of the one memory that answers the query.
    pub answer: usize,
}

pub struct Dataset {
    pub memories: Vec<Memory>,
    pub queries: Vec<Query>,
}

const NAMES: &[&str] = &[
    "Mia", "Leo", "Priya", "Omar", "Hannah", "Tomasz", "Aiko", "Kwame", "Sofia", "Mateo", "Ingrid", "Ravi", "Chloe",
    "Dmitri", "Amara", "Jonas", "Lucia", "Farid", "Greta", "Haruto", "Isla", "Jamal", "Keiko", "Lars", "Maya",
    "Nikolai", "Olivia", "Pablo", "Quinn", "Rosa", "Samir", "Tessa", "Umar", "Vera", "Wei", "Ximena", "Yusuf", "Zara",
    "Anton", "Bianca", "Caleb", "Dalia", "Emil", "Fiona", "Gustav", "Helena", "Ivan", "Jade", "Kofi", "Lena", "Marco",
    "Nadia", "Oscar", "Petra", "Rafael", "Selin", "Theo", "Ursula", "Viktor", "Wanda",
];

const COLOURS: &[&str] = &[
    "teal",
    "crimson",
    "mustard yellow",
    "navy blue",
    "lavender",
    "olive green",
    "coral",
    "charcoal grey",
];
const DRINKS: &[&str] = &[
    "oolong tea",
    "black coffee",
    "oat milk latte",
    "green tea",
    "hot chocolate",
    "sparkling water",
    "chai",
    "espresso",
];
const INSTRUMENTS: &[&str] = &[
    "violin",
    "cello",
    "piano",
    "trumpet",
    "bass guitar",
    "flute",
    "drums",
    "saxophone",
];
const CITIES: &[&str] = &[
    "Lisbon", "Porto", "Krakow", "Nairobi", "Osaka", "Montreal", "Valencia", "Tbilisi", "Bergen", "Cusco", "Ghent",
    "Adelaide", "Lyon", "Tallinn", "Accra", "Hanoi",
];
const LANGUAGES: &[&str] = &[
    "Japanese",
    "Portuguese",
    "Swahili",
    "Korean",
    "Dutch",
    "Turkish",
    "Polish",
    "Greek",
];
const JOBS: &[&str] = &[
    "nurse",
    "architect",
    "data analyst",
    "pastry chef",
    "electrician",
    "translator",
    "pilot",
    "pharmacist",
];
const COMPANIES: &[&str] = &[
    "Northwind",
    "Globex",
    "Initech",
    "Umbrella Logistics",
    "Stark Foods",
    "Wayne Textiles",
    "Acme Rail",
    "Hooli",
    "Vandelay Imports",
    "Soylent Farms",
    "Oscorp Labs",
    "Cyberdyne Health",
];
const PETS: &[&str] = &[
    "Biscuit", "Pepper", "Mochi", "Ziggy", "Nala", "Bruno", "Olive", "Tofu", "Rex", "Luna", "Gizmo", "Maple",
];
const MONTHS: &[&str] = &[
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const HOBBIES: &[(&str, &str)] = &[
    (
        "goes rock climbing every Saturday",
        "Who spends weekends scaling walls with ropes and chalk?",
    ),
    (
        "bakes sourdough bread on Sundays",
        "Who makes loaves from a starter culture?",
    ),
    ("runs half marathons", "Who competes in 21-kilometre road races?"),
    ("collects vinyl records", "Who hunts for old LPs at flea markets?"),
    (
        "paints watercolour landscapes",
        "Who makes pictures of hills and rivers with a brush?",
    ),
    (
        "plays chess online in the evenings",
        "Who spends nights moving knights and bishops on the internet?",
    ),
    (
        "grows tomatoes on the balcony",
        "Who has a little vegetable garden outside the flat?",
    ),
    ("repairs old bicycles", "Who fixes up second-hand bikes?"),
];
const ALLERGIES: &[(&str, &str)] = &[
    ("is allergic to shellfish", "Who has to avoid prawns and lobster?"),
    ("is allergic to peanuts", "Who cannot eat anything with groundnuts?"),
    ("is lactose intolerant", "Who cannot have dairy?"),
    ("is allergic to cats", "Who sneezes around felines?"),
    ("has a gluten intolerance", "Who must avoid wheat?"),
    (
        "is allergic to bee stings",
        "Whose body reacts badly to wasp or bee venom?",
    ),
    ("cannot eat eggs", "Who has to skip omelettes?"),
    (
        "is allergic to penicillin",
        "Which person reacts to a common antibiotic?",
    ),
];
const QUIRKS: &[(&str, &str)] = &[
    (
        "is afraid of flying and takes the train whenever possible",
        "Who avoids aeroplanes out of fear?",
    ),
    (
        "is colour-blind and cannot tell red from green",
        "Who has trouble distinguishing certain hues?",
    ),
    (
        "speaks fluent Icelandic thanks to a grandmother from Reykjavik",
        "Who knows a Nordic island tongue from family?",
    ),
    (
        "was a competitive swimmer in university",
        "Who used to race in the pool as a student?",
    ),
    (
        "is vegan and eats no animal products",
        "Who follows a fully plant-based diet?",
    ),
    (
        "cycles forty kilometres to work every day",
        "Who commutes a long way by bike?",
    ),
    (
        "once met the Dalai Lama in Dharamsala",
        "Who had an encounter with a Tibetan spiritual leader?",
    ),
    (
        "keeps bees on the roof of the apartment building",
        "Who looks after hives above their flat?",
    ),
    (
        "has a pilot's licence for small propeller planes",
        "Who is certified to fly light aircraft?",
    ),
    (
        "writes science fiction short stories under a pen name",
        "Who publishes speculative fiction pseudonymously?",
    ),
    (
        "volunteers at the animal shelter on Wednesdays",
        "Who helps out with rescued pets midweek?",
    ),
    (
        "is training for an Ironman triathlon",
        "Who is preparing for the swim-bike-run endurance race?",
    ),
    ("broke a wrist skiing last winter", "Who injured an arm on the slopes?"),
    ("has never owned a car", "Who has always lived without an automobile?"),
    (
        "sings in a gospel choir",
        "Who performs religious music with a vocal group?",
    ),
    (
        "grew up on a sheep farm in New Zealand",
        "Who was raised around flocks on the other side of the world?",
    ),
    (
        "does stand-up comedy at open mic nights",
        "Who tells jokes on stage at amateur events?",
    ),
    (
        "is a certified scuba diving instructor",
        "Who teaches underwater breathing-apparatus courses?",
    ),
    (
        "restores antique clocks as a side business",
        "Who repairs old timepieces for money?",
    ),
    ("is allergic to latex", "Who must avoid rubber gloves?"),
    (
        "meditates for an hour before sunrise",
        "Who practises mindfulness in the early dawn?",
    ),
    (
        "has run the Boston marathon three times",
        "Who completed the famous Massachusetts race repeatedly?",
    ),
    (
        "builds furniture from reclaimed wood",
        "Who makes tables and chairs out of salvaged timber?",
    ),
    (
        "fosters kittens for a local charity",
        "Who temporarily cares for baby cats?",
    ),
    ("hates the smell of coriander", "Who dislikes cilantro?"),
    (
        "is a night owl who rarely sleeps before 2 a.m.",
        "Who stays up very late?",
    ),
    (
        "learned to juggle with five balls",
        "Who can keep several objects in the air at once?",
    ),
    (
        "plays in a Sunday football league",
        "Who kicks a ball around competitively on weekends?",
    ),
    (
        "is an amateur astronomer with a backyard telescope",
        "Who looks at the stars through their own optics?",
    ),
    (
        "recently finished a PhD in marine biology",
        "Who just got a doctorate studying ocean life?",
    ),
    (
        "walks with a cane after a hip operation",
        "Who uses a walking stick since surgery?",
    ),
    (
        "knits sweaters for the whole family",
        "Who makes woollen jumpers for relatives?",
    ),
    ("owns a vintage Vespa scooter", "Who rides a classic Italian motorbike?"),
    (
        "won a regional chili cooking contest",
        "Who took a prize for a spicy stew?",
    ),
    ("is a volunteer firefighter", "Who fights blazes without being paid?"),
    (
        "has a twin sister in Melbourne",
        "Whose sibling of the same age lives in Australia?",
    ),
    ("does not drink alcohol", "Who is teetotal?"),
    ("carves wooden spoons as a hobby", "Who whittles kitchen utensils?"),
    (
        "is an avid birdwatcher who keeps a list of sightings",
        "Who logs the species of birds they spot?",
    ),
    ("uses a wheelchair", "Who needs step-free access?"),
    (
        "breeds koi carp in a garden pond",
        "Who raises ornamental fish outdoors?",
    ),
    (
        "plays the bagpipes at weddings",
        "Who performs with a Scottish wind instrument at ceremonies?",
    ),
    ("is deaf in the left ear", "Who has hearing loss on one side?"),
    (
        "has visited every country in South America",
        "Who has travelled to all the nations of that continent?",
    ),
    (
        "sleepwalks when stressed",
        "Who wanders around at night without waking?",
    ),
    (
        "collects stamps from former Soviet republics",
        "Who has a philately hobby focused on post-USSR states?",
    ),
    (
        "designed a board game that sold ten thousand copies",
        "Who created a tabletop game that became a modest hit?",
    ),
    ("brews beer in the garage", "Who makes ale at home?"),
    (
        "is a chess grandmaster",
        "Who holds the highest title in the royal game?",
    ),
    ("rescued a drowning child at the beach", "Who saved a kid from the sea?"),
    (
        "needs an aisle seat because of claustrophobia",
        "Who feels trapped in window seats?",
    ),
    (
        "has a black belt in judo",
        "Who reached the top grade in a Japanese martial art?",
    ),
    (
        "sews costumes for an amateur theatre",
        "Who makes outfits for stage productions?",
    ),
    ("fasts every Monday", "Who skips food one day a week?"),
    (
        "keeps a pet tortoise that is fifty years old",
        "Who owns a very old reptile?",
    ),
    (
        "translates manga as a volunteer",
        "Who renders Japanese comics into another language for free?",
    ),
    ("is afraid of spiders", "Who has arachnophobia?"),
    (
        "climbed Mount Kilimanjaro for charity",
        "Who reached the top of Africa's highest peak to raise money?",
    ),
    (
        "is left-handed and needs left-handed scissors",
        "Who needs tools made for the other hand?",
    ),
    ("was born on a ship in the Atlantic", "Whose birth happened at sea?"),
    (
        "dislikes phone calls and prefers text messages",
        "Who would rather get a message than a ring?",
    ),
    ("grows bonsai trees", "Who cultivates miniature potted trees?"),
    ("coaches a youth basketball team", "Who trains kids to shoot hoops?"),
    (
        "can solve a Rubik's cube in under a minute",
        "Who is quick with the coloured puzzle cube?",
    ),
];

const FORMATS: &[&str] = &["PDF", "CSV", "Markdown", "Excel", "plain text", "HTML"];
const AIRLINES: &[&str] = &["TAP", "LOT", "KLM", "ANA", "Aer Lingus", "Iberia"];
const PROJECTS: &[&str] = &[
    "Falcon", "Bluebird", "Atlas", "Quartz", "Nimbus", "Orchid", "Pioneer", "Sequoia", "Tundra", "Zephyr", "Lantern",
    "Mosaic", "Harbor", "Juniper", "Keystone",
];

/// Facts with a chosen value, their memory sentence and a query per style (a `None` style is not
/// asked for that fact: its value is too common to single out one memory).
struct Fact {
    memory: String,
    category: &'static str,
    name_query: String,
    value_query: Option<(String, String)>,
    paraphrase_query: Option<(String, String)>,
}

fn facts_for(person: usize, name: &str, rng: &mut Rng) -> Vec<Fact> {
    let n = name;
    let day = 1 + rng.below(28);
    let month = *rng.pick(MONTHS);
    let day2 = 1 + rng.below(28);
    let month2 = *rng.pick(MONTHS);
    let locker = 1000 + rng.below(9000);
    let flight = 100 + rng.below(900);
    let room = 100 + rng.below(800);
    let hour = 8 + rng.below(10);
    let colour = *rng.pick(COLOURS);
    let drink = *rng.pick(DRINKS);
    let instrument = *rng.pick(INSTRUMENTS);
    let city = *rng.pick(CITIES);
    let language = *rng.pick(LANGUAGES);
    let job = *rng.pick(JOBS);
    let company = *rng.pick(COMPANIES);
    let pet = *rng.pick(PETS);
    let (hobby, hobby_q) = *rng.pick(HOBBIES);
    let (allergy, allergy_q) = *rng.pick(ALLERGIES);
    let format = *rng.pick(FORMATS);
    let airline = *rng.pick(AIRLINES);
    let project = *rng.pick(PROJECTS);
    let kids = 1 + rng.below(4);
    // The first people each have a quirk nobody else has: the targets of paraphrase queries.
    let quirk = QUIRKS.get(person);
    let f = |memory: String, category, name_query: String| Fact {
        memory,
        category,
        name_query,
        value_query: None,
        paraphrase_query: None,
    };
    let mut facts = vec![
        f(
            format!("{n}'s favourite colour is {colour}."),
            "declarative",
            format!("Which colour does {n} like best?"),
        ),
        f(
            format!("{n} prefers {drink} in the morning."),
            "declarative",
            format!("What does {n} drink when they wake up?"),
        ),
        f(
            format!("{n} plays the {instrument} in a community orchestra."),
            "declarative",
            format!("Which instrument does {n} perform on?"),
        ),
        Fact {
            value_query: Some((format!("Who lives in {city}?"), format!(" {city} "))),
            ..f(
                format!("{n} moved to {city} last year."),
                "declarative",
                format!("In which city is {n} based now?"),
            )
        },
        f(
            format!("{n} is learning {language} with an online tutor."),
            "declarative",
            format!("Which language is {n} studying?"),
        ),
        Fact {
            value_query: Some((format!("Who works for {company}?"), format!("at {company}."))),
            ..f(
                format!("{n} works as a {job} at {company}."),
                "declarative",
                format!("What is {n}'s job and employer?"),
            )
        },
        Fact {
            value_query: Some((format!("Whose dog answers to {pet}?"), format!("called {pet}."))),
            ..f(
                format!("{n} has a dog called {pet}."),
                "declarative",
                format!("What is the name of {n}'s dog?"),
            )
        },
        Fact {
            paraphrase_query: Some((hobby_q.to_string(), hobby.into())),
            ..f(
                format!("{n} {hobby}."),
                "declarative",
                format!("What does {n} do for fun?"),
            )
        },
        Fact {
            paraphrase_query: Some((allergy_q.to_string(), allergy.into())),
            ..f(
                format!("{n} {allergy}."),
                "declarative",
                format!("Does {n} have any allergy or intolerance?"),
            )
        },
        Fact {
            value_query: Some((format!("Whose locker is number {locker}?"), format!(" {locker}."))),
            ..f(
                format!("{n}'s gym locker number is {locker}."),
                "declarative",
                format!("Which locker does {n} use at the gym?"),
            )
        },
        Fact {
            value_query: Some((
                format!("Whose birthday is on {month} {day}?"),
                format!("birthday is on {month} {day}."),
            )),
            ..f(
                format!("{n}'s birthday is on {month} {day}."),
                "declarative",
                format!("When was {n} born?"),
            )
        },
        Fact {
            value_query: Some((
                format!("What is happening on {month2} {day2} at {hour}:00?"),
                format!("on {month2} {day2} at {hour}:00."),
            )),
            ..f(
                format!("{n} has a dentist appointment on {month2} {day2} at {hour}:00."),
                "episodic",
                format!("When is {n} seeing the dentist?"),
            )
        },
        Fact {
            value_query: Some((
                format!("Who is flying with {airline} flight {flight}?"),
                format!("{airline} flight {flight} "),
            )),
            ..f(
                format!("{n} is booked on {airline} flight {flight} next month."),
                "episodic",
                format!("Which flight is {n} taking?"),
            )
        },
        Fact {
            value_query: Some((
                format!("Who leads project {project}?"),
                format!("the {project} project"),
            )),
            ..f(
                format!("{n} leads the {project} project, which ships in {month}."),
                "declarative",
                format!("Which project is {n} in charge of?"),
            )
        },
        f(
            format!("{n} wants weekly reports delivered as {format} files."),
            "procedural",
            format!("In what file type should {n} receive the weekly reports?"),
        ),
        f(
            format!("{n} has {kids} children."),
            "declarative",
            format!("How many kids does {n} have?"),
        ),
        Fact {
            value_query: Some((format!("Who is in hotel room {room}?"), format!("room {room} "))),
            ..f(
                format!("{n} is staying in room {room} at the conference hotel."),
                "episodic",
                format!("Where is {n} staying during the conference?"),
            )
        },
        f(
            format!("Always address {n} by first name and keep replies under 100 words."),
            "procedural",
            format!("How should the assistant talk to {n}?"),
        ),
    ];
    if let Some((quirk, quirk_q)) = quirk {
        facts.push(Fact {
            paraphrase_query: Some((quirk_q.to_string(), quirk.to_string())),
            ..f(
                format!("{n} {quirk}."),
                "declarative",
                format!("What is unusual about {n}?"),
            )
        });
    }
    facts
}

/// Generic chatter-like memories without a person, as distractors.
const GENERIC: &[&str] = &[
    "The office wifi was slow on Monday morning.",
    "The team lunch moved to the Thai place around the corner.",
    "The printer on the third floor jams with thick paper.",
    "Quarterly planning happens in the big meeting room.",
    "The coffee machine in the kitchen was descaled last week.",
    "Parking near the station is free after six in the evening.",
    "The shared calendar uses Central European Time.",
    "New laptops are ordered through the IT help desk.",
    "The fire drill is scheduled for the first Tuesday of the month.",
    "Expense reports are due by the fifth working day.",
];

/// `people` people with every fact each (18 per person, 19 for the first 64), plus generic distractors, and
/// `queries` queries drawn over the styles.
pub fn generate(seed: u64, people: usize, queries: usize) -> Dataset {
    let mut rng = Rng::new(seed);
    let mut memories = Vec::new();
    // (query, key): a value or paraphrase query is kept only if its key, a literal piece of the
    // answer, occurs in no other memory; otherwise it would have several right answers.
    let mut candidates: Vec<(Query, String)> = Vec::new();
    for p in 0..people {
        let base = NAMES[p % NAMES.len()];
        // Past the name list, people get a family name so names stay distinct.
        let name = if p < NAMES.len() {
            base.to_string()
        } else {
            format!("{base} {}", SURNAMES[(p / NAMES.len() - 1) % SURNAMES.len()])
        };
        for fact in facts_for(p, &name, &mut rng) {
            let index = memories.len();
            memories.push(Memory {
                content: fact.memory,
                category: fact.category,
            });
            candidates.push((
                Query {
                    text: fact.name_query,
                    style: QueryStyle::Name,
                    answer: index,
                },
                String::new(),
            ));
            for (query, style) in [
                (fact.value_query, QueryStyle::Value),
                (fact.paraphrase_query, QueryStyle::Paraphrase),
            ] {
                if let Some((text, key)) = query {
                    candidates.push((
                        Query {
                            text,
                            style,
                            answer: index,
                        },
                        key,
                    ));
                }
            }
        }
    }
    for round in 0..3 {
        for g in GENERIC {
            let content = if round == 0 {
                g.to_string()
            } else {
                format!("{g} (noted again in week {})", round * 7)
            };
            memories.push(Memory {
                content,
                category: "episodic",
            });
        }
    }
    let mut by_style: [Vec<Query>; 3] = Default::default();
    for (q, key) in candidates {
        if q.style != QueryStyle::Name && memories.iter().filter(|m| m.content.contains(key.as_str())).count() != 1 {
            continue;
        }
        let slot = match q.style {
            QueryStyle::Name => 0,
            QueryStyle::Value => 1,
            QueryStyle::Paraphrase => 2,
        };
        by_style[slot].push(q);
    }
    // Equal shares of the three styles (as far as each has queries), drawn without replacement.
    let mut chosen = Vec::new();
    let mut slot = 0;
    while chosen.len() < queries && by_style.iter().any(|v| !v.is_empty()) {
        if !by_style[slot].is_empty() {
            let i = rng.below(by_style[slot].len());
            chosen.push(by_style[slot].swap_remove(i));
        }
        slot = (slot + 1) % 3;
    }
    Dataset {
        memories,
        queries: chosen,
    }
}

const SURNAMES: &[&str] = &[
    "Okafor",
    "Lindqvist",
    "Moreau",
    "Tanaka",
    "Novak",
    "Haddad",
    "Kowalski",
    "Fernandes",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_well_formed() {
        let a = generate(7, 160, 240);
        let b = generate(7, 160, 240);
        assert_eq!(a.memories.len(), b.memories.len());
        assert_eq!(
            a.queries.iter().map(|q| &q.text).collect::<Vec<_>>(),
            b.queries.iter().map(|q| &q.text).collect::<Vec<_>>()
        );
        assert!(a.memories.len() >= 2900, "{}", a.memories.len());
        assert_eq!(a.queries.len(), 240);
        for style in [QueryStyle::Name, QueryStyle::Value, QueryStyle::Paraphrase] {
            assert!(a.queries.iter().filter(|q| q.style == style).count() >= 40, "{style:?}");
        }
        let mut contents: Vec<&String> = a.memories.iter().map(|m| &m.content).collect();
        contents.sort();
        contents.dedup();
        assert_eq!(contents.len(), a.memories.len(), "memories are distinct");
    }
}
