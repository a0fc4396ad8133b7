"""Generic streaming machinery shared by every stage: the Stage interface, the runner loop
(consume → handle → ship → write → commit) and the outage-safe DB writer."""
