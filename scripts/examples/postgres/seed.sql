-- The table scripts/examples/postgres.lua seeds while it builds the image.
CREATE TABLE items (
    id    integer PRIMARY KEY,
    name  text NOT NULL,
    price numeric(10, 2) NOT NULL
);
INSERT INTO items
SELECT i, 'item ' || i, round((i * 7919 % 10000) / 100.0, 2)
FROM generate_series(1, 1000) AS i;
