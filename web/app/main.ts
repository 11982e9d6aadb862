import './app.css';
import { config } from './api.js';
import { showLogin } from './login.js';
import { showSession } from './session.js';

const root = document.getElementById('app')!;
const login = new URL(config.loginUrl, location.href);
const onLoginPage = login.origin === location.origin && login.pathname.replace(/\/$/, '') === location.pathname.replace(/\/$/, '');

if (onLoginPage) showLogin(root);
else void showSession(root);
