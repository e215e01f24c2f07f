-- The lifetime-value models last fitted (BG/NBD and Gamma-Gamma) and each
-- customer's values under them, replaced whole by each fit.
CREATE TABLE clv_fits (
    singleton        boolean          PRIMARY KEY DEFAULT true CHECK (singleton),
    fitted_at        timestamptz      NOT NULL,
    currency         text             NOT NULL,
    horizon_days     integer          NOT NULL,
    customers        bigint           NOT NULL,
    repeat_customers bigint           NOT NULL,
    r                double precision NOT NULL,
    alpha            double precision NOT NULL,
    a                double precision NOT NULL,
    b                double precision NOT NULL,
    bgnbd_ll         double precision NOT NULL,
    p                double precision NOT NULL,
    q                double precision NOT NULL,
    gamma            double precision NOT NULL,
    gamma_gamma_ll   double precision NOT NULL,
    fitted_by        text             NOT NULL
);

CREATE TABLE clv_values (
    contact_id         uuid             PRIMARY KEY,
    historic_value     bigint           NOT NULL,
    repeat_purchases   bigint           NOT NULL,
    probability_alive  double precision NOT NULL,
    expected_purchases double precision NOT NULL,
    expected_spend     double precision NOT NULL,
    predicted_value    bigint           NOT NULL
);
