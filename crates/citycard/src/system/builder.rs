//! Building a [`CityCard`]: storage, adapters, and the wiring of every service.

use super::*;

/// Where the card system keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// Everything in memory (tests, demos, benchmarks).
    InMemory,
    /// One SQLite file (created if missing).
    Sqlite(PathBuf),
    /// A PostgreSQL database, by URL (`postgres://user@host:port/db?sslmode=require`),
    /// shared by every app instance of the city.
    Postgres(String),
}

/// Builds a [`CityCard`]: choose storage, plug in external adapters or take
/// the clearly named simulated ones.
///
/// ```
/// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// # rt.block_on(async {
/// let city = citycard::CityCard::builder().in_memory().build().await?;
/// assert!(city.simulated_wallet().is_some());
/// # Ok::<(), citycard::CityCardError>(())
/// # }).unwrap();
/// ```
pub struct CityCardBuilder {
    storage: Storage,
    clock: Option<Arc<dyn Clock>>,
    ids: Option<Arc<dyn IdGenerator>>,
    verifier: Option<Arc<dyn RealNameVerifier>>,
    wallet: Option<Arc<dyn PlatformWallet>>,
    keys: Option<Arc<dyn KeyProvider>>,
    issuer: Option<Issuer>,
    fare_engine: Option<FareEngine>,
    binding_config: BindingConfig,
    identity_config: IdentityConfig,
    wallet_limits: WalletLimits,
    chunk_trips: usize,
    issue_chunk: usize,
    roles: Arc<OperatorRoles>,
    ledger_layer: Option<LedgerLayer>,
    binding_layer: Option<BindingLayer>,
    payments_layer: Option<PaymentsLayer>,
}

/// Wraps the ledger's store (see [`CityCardBuilder::wrap_ledger_store`]).
type LedgerLayer = Box<dyn FnOnce(Arc<dyn LedgerStore>) -> Arc<dyn LedgerStore> + Send>;

/// Wraps the binding store (see [`CityCardBuilder::wrap_binding_store`]).
type BindingLayer = Box<dyn FnOnce(Arc<dyn BindingStore>) -> Arc<dyn BindingStore> + Send>;

/// Wraps the medical payments port (see [`CityCardBuilder::wrap_medical_payments`]).
type PaymentsLayer = Box<
    dyn FnOnce(
            Arc<dyn citycard_healthcare::MedicalPayments>,
        ) -> Arc<dyn citycard_healthcare::MedicalPayments>
        + Send,
>;

impl Default for CityCardBuilder {
    fn default() -> Self {
        Self {
            storage: Storage::InMemory,
            clock: None,
            ids: None,
            verifier: None,
            wallet: None,
            keys: None,
            issuer: None,
            fare_engine: None,
            binding_config: BindingConfig::default(),
            identity_config: IdentityConfig::default(),
            wallet_limits: WalletLimits::default(),
            chunk_trips: citycard_transit::MAX_CHARGES_PER_CHUNK,
            issue_chunk: super::ISSUE_CHUNK,
            roles: Arc::new(OperatorRoles::new()),
            ledger_layer: None,
            binding_layer: None,
            payments_layer: None,
        }
    }
}

impl std::fmt::Debug for CityCardBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CityCardBuilder")
            .field("storage", &self.storage)
            .finish_non_exhaustive()
    }
}

impl CityCardBuilder {
    /// Keep everything in one SQLite file.
    pub fn sqlite(mut self, path: impl AsRef<Path>) -> Self {
        self.storage = Storage::Sqlite(path.as_ref().to_path_buf());
        self
    }

    /// Keeps everything in a PostgreSQL database (migrated when the city is
    /// built). Several app instances may share it: every store's concurrency
    /// is enforced by the database, and the ledger's by its version row (see
    /// `citycard_postgres::ledger`). TLS follows `sslmode` in the URL.
    pub fn postgres(mut self, url: impl Into<String>) -> Self {
        self.storage = Storage::Postgres(url.into());
        self
    }

    /// Keeps everything on `storage` (what a command line chose).
    pub fn storage(mut self, storage: Storage) -> Self {
        self.storage = storage;
        self
    }

    /// Wraps the ledger's store, whichever backend is chosen (metrics, fault
    /// injection in tests); the wrapper must keep the store's semantics.
    pub fn wrap_ledger_store(
        mut self,
        layer: impl FnOnce(Arc<dyn LedgerStore>) -> Arc<dyn LedgerStore> + Send + 'static,
    ) -> Self {
        self.ledger_layer = Some(Box::new(layer));
        self
    }

    /// Wraps the binding store's reads and single-row writes (commits go
    /// through the card change store, which stays as it is). For the
    /// simulator's checker tests (`citycard-sim`), which make a store show
    /// a second live binding; not for hosts.
    #[doc(hidden)]
    pub fn wrap_binding_store(
        mut self,
        layer: impl FnOnce(Arc<dyn BindingStore>) -> Arc<dyn BindingStore> + Send + 'static,
    ) -> Self {
        self.binding_layer = Some(Box::new(layer));
        self
    }

    /// Wraps the medical payments port billing pays through (the ledger).
    /// For the simulator (`citycard-sim`), which makes the port fail, time
    /// out or lose its answer; not for hosts.
    #[doc(hidden)]
    pub fn wrap_medical_payments(
        mut self,
        layer: impl FnOnce(
            Arc<dyn citycard_healthcare::MedicalPayments>,
        ) -> Arc<dyn citycard_healthcare::MedicalPayments>
        + Send
        + 'static,
    ) -> Self {
        self.payments_layer = Some(Box::new(layer));
        self
    }

    /// Keep everything in memory.
    pub fn in_memory(mut self) -> Self {
        self.storage = Storage::InMemory;
        self
    }

    /// The clock (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The id generator (default: time-ordered random ids).
    pub fn id_generator(mut self, ids: Arc<dyn IdGenerator>) -> Self {
        self.ids = Some(ids);
        self
    }

    /// The real-name verification provider (default: a [`SimulatedVerifier`]).
    pub fn real_name_verifier(mut self, verifier: Arc<dyn RealNameVerifier>) -> Self {
        self.verifier = Some(verifier);
        self
    }

    /// The platform card wallet (default: a [`SimulatedWallet`]).
    pub fn platform_wallet(mut self, wallet: Arc<dyn PlatformWallet>) -> Self {
        self.wallet = Some(wallet);
        self
    }

    /// The key provider of the personal-data vault (default: random keys in
    /// memory, which cannot open a database written by another process; give
    /// a real one for any persistent deployment).
    pub fn key_provider(mut self, keys: Arc<dyn KeyProvider>) -> Self {
        self.keys = Some(keys);
        self
    }

    /// The ride-code issuer and its keys (default: a new SM2 key valid for a year).
    pub fn ride_code_issuer(mut self, issuer: Issuer) -> Self {
        self.issuer = Some(issuer);
        self
    }

    /// Card rules and binding limits.
    pub fn binding_config(mut self, config: BindingConfig) -> Self {
        self.binding_config = config;
        self
    }

    /// Real-name verification limits.
    pub fn identity_config(mut self, config: IdentityConfig) -> Self {
        self.identity_config = config;
        self
    }

    /// The fare rules (default: Hangzhou's shipped GTFS-Fares v2 data). The
    /// feed must price in CNY, the wallets' currency; another currency is
    /// refused when the city is built.
    pub fn fare_engine(mut self, engine: FareEngine) -> Self {
        self.fare_engine = Some(engine);
        self
    }

    /// Cards per write transaction of [`CityCard::issue_cards`]
    /// ([`super::ISSUE_CHUNK`] by default; at least 1).
    #[must_use]
    pub fn issue_chunk_cards(mut self, cards: usize) -> Self {
        self.issue_chunk = cards.max(1);
        self
    }

    /// How many trips one settlement chunk (one ledger batch, one write
    /// transaction) holds at most: [`citycard_transit::MAX_CHARGES_PER_CHUNK`]
    /// by default, which is also the ceiling. Smaller chunks commit more
    /// often and hold less in memory.
    pub fn settlement_chunk_trips(mut self, trips: usize) -> Self {
        self.chunk_trips = trips;
        self
    }

    /// Wallet caps.
    pub fn wallet_limits(mut self, limits: WalletLimits) -> Self {
        self.wallet_limits = limits;
        self
    }

    /// Operators' roles (default: an empty registry, so an operator has no
    /// role until the host grants one; the registry stays live after build).
    pub fn operator_roles(mut self, roles: Arc<OperatorRoles>) -> Self {
        self.roles = roles;
        self
    }

    /// Opens the stores and wires every service.
    pub async fn build(self) -> Result<CityCard, CityCardError> {
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let ids: Arc<dyn IdGenerator> = self.ids.unwrap_or_else(|| {
            Arc::new(TimeOrderedIdGenerator::with_clock(Box::new(clock.clone())))
        });
        let mut stores = match &self.storage {
            Storage::InMemory => Stores::in_memory(),
            Storage::Sqlite(path) => Stores::sqlite(Database::open(path)?),
            Storage::Postgres(url) => {
                Stores::postgres(citycard_postgres::Database::connect(url).await?)
            }
        };
        let wrapped_ledger = self.ledger_layer.is_some();
        if let Some(layer) = self.ledger_layer {
            stores.ledger = layer(stores.ledger);
        }
        if let Some(layer) = self.binding_layer {
            stores.bindings = layer(stores.bindings);
        }

        let (verifier, simulated_verifier): (Arc<dyn RealNameVerifier>, _) = match self.verifier {
            Some(verifier) => (verifier, None),
            None => {
                let simulated = Arc::new(SimulatedVerifier::new());
                (simulated.clone(), Some(simulated))
            }
        };
        let keys: Arc<dyn KeyProvider> = match self.keys {
            Some(k) => k,
            None => Arc::new(
                MemoryKeyProvider::random()
                    .map_err(|e| CityCardError::Config(format!("vault keys: {e}")))?,
            ),
        };
        let identity = Arc::new(
            IdentityService::new(
                IdentityPorts {
                    persons: stores.persons.clone(),
                    accounts: stores.platform_accounts.clone(),
                    verifier,
                    vault: Vault::new(keys),
                    audit: stores.audit.clone(),
                    idempotency: stores.idempotency.clone(),
                    clock: clock.clone(),
                    ids: ids.clone(),
                },
                self.identity_config,
            )
            .with_roles(self.roles.clone()),
        );

        let grants: Arc<dyn GrantVerifier> =
            Arc::new(StoredGrants::new(stores.delegations.clone()));
        let ledger = Arc::new(
            Ledger::open(stores.ledger.clone(), clock.clone())
                .await?
                .with_audit(stores.audit.clone())
                .with_grants(grants.clone())
                .with_roles(self.roles.clone()),
        );
        let accounts = Accounts::new(ledger.clone(), self.wallet_limits.clone());
        accounts.open_system_accounts().await?;

        let (platform_wallet, simulated_wallet): (Arc<dyn PlatformWallet>, _) = match self.wallet {
            Some(wallet) => (wallet, None),
            None => {
                let simulated = Arc::new(SimulatedWallet::new());
                (simulated.clone(), Some(simulated))
            }
        };
        let guardians = Arc::new(Guardianships::new());
        let id_index = Arc::new(VaultIdIndex::new(identity.clone()));
        let card_format = self.binding_config.rules.number_format.clone();
        let card_issuer: Arc<dyn CardIssuer> = Arc::new(RegistryCardIssuer::new(
            stores.cards.clone(),
            id_index.clone(),
        ));
        let cards = Arc::new(
            CardService::new(
                CardPorts {
                    cards: stores.cards.clone(),
                    bindings: stores.bindings.clone(),
                    delegations: stores.delegations.clone(),
                    changes: stores.card_changes.clone(),
                    idempotency: stores.idempotency.clone(),
                    audit: stores.audit.clone(),
                    clock: clock.clone(),
                    ids: ids.clone(),
                    real_names: Arc::new(IdentityRealNames::new(
                        identity.clone(),
                        guardians.clone(),
                        clock.clone(),
                    )),
                    id_index: id_index.clone(),
                    issuer: card_issuer.clone(),
                    wallet: platform_wallet,
                    funds: Arc::new(LedgerCardFunds::new(ledger.clone())),
                    balances: Arc::new(LedgerBalances::new(ledger.clone(), clock.clone())),
                },
                self.binding_config,
            )
            .with_roles(self.roles.clone()),
        );
        let unit: Arc<dyn UnitOfWork> = match (&stores.db, &stores.pg, wrapped_ledger) {
            (Some(db), _, false) => Arc::new(SqliteUnitOfWork::new(db.clone())),
            (_, Some((db, ledger)), false) => {
                Arc::new(PostgresUnitOfWork::new(db.clone(), ledger.clone()))
            }
            _ => Arc::new(PortsUnitOfWork::new(
                stores.ledger.clone(),
                stores.transit.clone(),
                stores.card_changes.clone(),
            )),
        };
        let wallet = WalletService::new(
            ledger.clone(),
            cards.clone(),
            stores.bindings.clone(),
            grants.clone(),
            self.roles.clone(),
            stores.audit.clone(),
            clock.clone(),
            unit.clone(),
        );

        let fare_engine = match self.fare_engine {
            Some(engine) => engine,
            None => FareEngine::hangzhou().map_err(|e| {
                CityCardError::Config(format!("the Hangzhou fare data does not load: {e}"))
            })?,
        };
        fare_engine
            .require_currency(citycard_transit::Currency::CNY)
            .map_err(|e| {
                CityCardError::Config(format!(
                    "card wallets hold CNY, so fares must be priced in CNY: {e}"
                ))
            })?;
        let fare_engine = Arc::new(fare_engine);
        let fare_payments = Arc::new(LedgerFarePayments::new(
            ledger.clone(),
            accounts.clone(),
            unit.clone(),
        ));
        let transit_store = stores.transit.clone();
        let riders = Arc::new(CardRiders::new(
            ledger.clone(),
            stores.cards.clone(),
            identity.clone(),
        ));
        let settlement = Settlement::new(
            fare_engine.clone(),
            fare_payments,
            stores.transit.clone(),
            riders,
            stores.audit.clone(),
            clock.clone(),
        )
        .with_roles(self.roles.clone())
        .with_chunk_trips(self.chunk_trips);
        let issuer = match self.issuer {
            Some(issuer) => issuer,
            None => {
                let mut issuer = Issuer::new(DEFAULT_RIDE_CODE_ISSUER_ID);
                let now = clock.now();
                issuer.rotate(
                    Algorithm::Sm2,
                    now - Duration::days(1),
                    now + Duration::days(365),
                )?;
                issuer
            }
        };

        let patients = Arc::new(Patients::new(
            identity.clone(),
            stores.cards.clone(),
            grants.clone(),
            stores.social.clone(),
            clock.clone(),
            card_format,
        ));
        let mut medical_payments: Arc<dyn citycard_healthcare::MedicalPayments> =
            Arc::new(LedgerMedicalPayments::new(ledger.clone(), accounts.clone()));
        if let Some(layer) = self.payments_layer {
            medical_payments = layer(medical_payments);
        }
        let appointments = AppointmentService::new(
            stores.appointments.clone(),
            patients.clone(),
            stores.audit.clone(),
            clock.clone(),
            ids.clone(),
            BookingPolicy::hangzhou()?,
        );
        let billing = BillingService::new(
            Arc::new(SettlementEngine::hangzhou()?),
            stores.settlements.clone(),
            medical_payments.clone(),
            patients.clone(),
            stores.audit.clone(),
            clock.clone(),
            ids.clone(),
        );
        let social = SocialInsuranceService::new(
            stores.social.clone(),
            patients,
            Some(medical_payments),
            clock.clone(),
        )
        .with_audit(stores.audit.clone());

        let issues = crate::issue::IssueDesk::new(ledger.clone(), unit.clone(), self.issue_chunk);
        Ok(CityCard {
            issues,
            unit,
            clock,
            ids,
            stores,
            identity,
            cards,
            ledger,
            accounts,
            wallet,
            transit: Transit {
                engine: fare_engine,
                settlement,
                issuer: Mutex::new(issuer),
                store: transit_store,
            },
            healthcare: Healthcare {
                appointments,
                billing,
                social,
            },
            guardians,
            roles: self.roles,
            grants,
            card_issuer,
            simulated_verifier,
            simulated_wallet,
        })
    }
}

impl CityCard {
    /// The PostgreSQL database, when the city runs on one (for tools and
    /// figures: [`citycard_postgres::Database::commits`] counts its write
    /// transactions).
    pub fn postgres_database(&self) -> Option<&citycard_postgres::Database> {
        self.stores.pg.as_ref().map(|(db, _)| db)
    }
}
