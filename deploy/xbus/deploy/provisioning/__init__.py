"""Provisioning the bus from one file (``bus.yaml``): its topics, its Kafka users (SCRAM) and
their least-privilege ACLs.

``bus_file`` reads and checks the file; ``access`` says which principals and ACLs it implies;
``cluster`` reads what the cluster has and works out the changes (the plan) and applies them;
``passwords`` keeps the users' passwords in the secrets folder.
"""
