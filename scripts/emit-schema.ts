/** `npm run schema`: writes schema.graphql from the type-graphql classes. */
import { writeFile } from 'node:fs/promises';
import { printedSchema } from '../src/graphql/schema.js';

await writeFile(new URL('../schema.graphql', import.meta.url), await printedSchema());
console.log('wrote schema.graphql');
