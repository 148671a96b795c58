-- Nexmark q4, average closing price per category: each auction's closing price (its
-- highest bid between opening and expiry), then per category the average of those.
--
-- As the published Flink SQL (the inner query's comma join, the condition in WHERE,
-- MAX per auction grouped by A.id, A.category; AVG per category outside). The inner
-- query is planned on q9's ranked-join machinery: an auction's MAX is final once the
-- watermark passes its `expires`, so each auction gives one row, once. The outer GROUP BY
-- has no window: it is an updating aggregate, emitting a category again whenever its
-- average changes, as Flink does (+I first, then -U old row / +U new row). Differences:
-- an auction without bids does not count (the inner join); the sink declares a
-- `row_kind STRING` column that the engine fills with each row's kind (the SELECT does not
-- produce it); the sink is a blackhole table with the result columns. Checkpoints are not
-- supported yet for this query (a join of two streams).

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

CREATE TABLE bid (
  auction BIGINT,
  bidder BIGINT,
  price BIGINT,
  channel VARCHAR,
  url VARCHAR,
  dateTime TIMESTAMP(3),
  extra VARCHAR,
  WATERMARK FOR dateTime AS dateTime - INTERVAL '4' SECOND
) WITH (
  'connector' = 'nexmark',
  'nexmark.table' = 'bid',
  'events.num' = '10000000',
  'seed' = '0'
);

CREATE TABLE nexmark_q4 (
  category BIGINT,
  avg_final DOUBLE,
  row_kind STRING
) WITH ('connector' = 'blackhole');

INSERT INTO nexmark_q4
SELECT Q.category, AVG(Q.final) AS avg_final
FROM (
  SELECT MAX(B.price) AS final, A.category
  FROM auction A, bid B
  WHERE A.id = B.auction AND B.dateTime BETWEEN A.dateTime AND A.expires
  GROUP BY A.id, A.category
) Q
GROUP BY Q.category;
