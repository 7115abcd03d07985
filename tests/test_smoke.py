"""The quickest end-to-end check: a record goes in and comes back, on SQLite and PostgreSQL."""


def test_create_then_view(client):
    created = client.post("/api/collections/posts", json={"title": "Hello", "views": 2})
    assert created.status_code == 201, created.json
    record = created.json
    assert len(record["id"]) == 15 and record["status"] == "draft" and record["views"] == 2
    fetched = client.get(f"/api/collections/posts/{record['id']}")
    assert fetched.status_code == 200
    assert fetched.json == record
