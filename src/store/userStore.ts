import type { Models, UserDoc } from './models.js';

export interface User {
  id: string;
  username: string;
  createdAt: Date;
}

const toUser = (doc: UserDoc): User => ({ id: doc._id.toHexString(), username: doc.username, createdAt: doc.createdAt });

/** Every read and write of the users collection. */
export class UserStore {
  constructor(private readonly models: Models) {}

  /** The new user, or null when the (lower-cased) username is taken. */
  async create(username: string, passwordHash: string, createdAt: Date): Promise<User | null> {
    try {
      return toUser((await this.models.User.create({ username, passwordHash, createdAt })).toObject());
    } catch (err) {
      if ((err as { code?: number }).code === 11000) return null;
      throw err;
    }
  }

  async findById(id: string): Promise<User | null> {
    const doc = await this.models.User.findById(id).lean<UserDoc>();
    return doc ? toUser(doc) : null;
  }

  /** The user and its password hash, for a login. */
  async findForLogin(username: string): Promise<(User & { passwordHash: string }) | null> {
    const doc = await this.models.User.findOne({ username }).lean<UserDoc>();
    return doc ? { ...toUser(doc), passwordHash: doc.passwordHash } : null;
  }
}
