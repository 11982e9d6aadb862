# Production image: compiled with tsc (which emits the decorator metadata type-graphql reads).
# It expects MONGODB_URI (see docker-compose.yml); the embedded development databases are not in it.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# The image runs on MONGODB_URI: no embedded mongod is downloaded at install (mongodb-memory-server's postinstall).
RUN MONGOMS_DISABLE_POSTINSTALL=1 npm ci
COPY tsconfig.json tsconfig.build.json ./
COPY src src
COPY scripts scripts
COPY web web
RUN npm run build && npm run build:web && npm prune --omit=dev

FROM node:20-bookworm-slim
ENV NODE_ENV=production HOST=0.0.0.0 PORT=4000
WORKDIR /app
COPY package.json ./
COPY --from=build /app/node_modules node_modules
COPY --from=build /app/dist dist
USER node
EXPOSE 4000
# Liveness: a database outage makes /readyz answer 503, but the process recovers by itself and needs no restart.
HEALTHCHECK CMD node -e "fetch('http://127.0.0.1:4000/livez').then(r=>process.exit(r.ok?0:1)).catch(()=>process.exit(1))"
CMD ["node", "dist/scripts/start.js"]
