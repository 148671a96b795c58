-- Nexmark q3, local item suggestion: who sells in category 10 in some states, with the
-- ids of their auctions.
--
-- As Flink's Nexmark q3: a regular (unbounded) inner join of auction and person on the
-- seller. Differences: the states are written in lower case ('or', 'id', 'ca'), as this
-- generator spells them (the reference generator writes 'OR', 'ID', 'CA'); the sink is a
-- blackhole table. The join keeps every person and auction that passes its WHERE
-- conjuncts (they are applied before the join state, per side) for the whole run, bounded
-- by SET 'join.state.rows-max' (default 10 million rows per shard) and
-- 'join.state.bytes-max' (default 1 GiB): past either the run stops with an error naming
-- the limit. Results are append-only (+I), each emitted when its second row arrives.

CREATE TABLE person (
  id BIGINT,
  name VARCHAR,
  emailAddress VARCHAR,
  creditCard VARCHAR,
  city VARCHAR,
  state VARCHAR,
  dateTime TIMESTAMP(3),
  extra VARCHAR,
  WATERMARK FOR dateTime AS dateTime - INTERVAL '4' SECOND
) WITH (
  'connector' = 'nexmark',
  'nexmark.table' = 'person',
  'events.num' = '10000000',
  'seed' = '0'
);

CREATE TABLE auction (
  id BIGINT,
  itemName VARCHAR,
  description VARCHAR,
  initialBid BIGINT,
  reserve BIGINT,
  dateTime TIMESTAMP(3),
  expires TIMESTAMP(3),
  seller BIGINT,
  category BIGINT,
  extra VARCHAR,
  WATERMARK FOR dateTime AS dateTime - INTERVAL '4' SECOND
) WITH (
  'connector' = 'nexmark',
  'nexmark.table' = 'auction',
  'events.num' = '10000000',
  'seed' = '0'
);

CREATE TABLE nexmark_q3 (
  name VARCHAR,
  city VARCHAR,
  state VARCHAR,
  id BIGINT
) WITH ('connector' = 'blackhole');

INSERT INTO nexmark_q3
SELECT P.name, P.city, P.state, A.id
FROM auction AS A INNER JOIN person AS P ON A.seller = P.id
WHERE A.category = 10 AND (P.state = 'or' OR P.state = 'id' OR P.state = 'ca');
