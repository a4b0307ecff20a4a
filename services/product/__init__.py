"""Product service: the catalog (pymongo API: montydb embedded or a real MongoDB), cache-aside in Redis."""
