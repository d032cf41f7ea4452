/**
 * The health dashboard: one self-contained page (inline CSS and JS, no build step, no CDN)
 * that reads /v1/status once and then follows /v1/status/events.
 *
 * The page itself carries no catalog data, so serving it needs no token; the data routes do.
 * Every catalog string reaches the DOM through textContent (never innerHTML), and the
 * Content-Security-Policy admits only this exact script and style (by hash), so a hostile app
 * or machine name cannot run script even if a rendering bug slipped in.
 */
import { createHash } from 'node:crypto';

const STYLE = `
:root{--bg:#f6f7f9;--card:#fff;--fg:#1d2433;--muted:#677086;--line:#e3e6ec;--chip:#eef1f6;--ok:#16a34a;--bad:#dc2626;--warn:#d97706;--off:#9aa3b2;--accent:#5b4bdb;--mono:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
@media (prefers-color-scheme:dark){:root{--bg:#10131a;--card:#181c25;--fg:#e6e9ef;--muted:#939cb0;--line:#2a303c;--chip:#222835;--accent:#9d92ff;--off:#5d6678}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
header{position:sticky;top:0;z-index:2;display:flex;align-items:center;gap:.75rem;flex-wrap:wrap;padding:.7rem 1.25rem;background:var(--card);border-bottom:1px solid var(--line)}
.brand{font-weight:700;font-size:1.05rem;letter-spacing:.02em}
.brand b{color:var(--accent)}
.nodeinfo{color:var(--muted)}
.live{margin-left:auto;display:flex;align-items:center;gap:.4rem;color:var(--muted);font-size:.85rem}
.live i{width:.55rem;height:.55rem;border-radius:50%;background:var(--off);display:inline-block}
.live.on i{background:var(--ok);box-shadow:0 0 0 3px color-mix(in srgb,var(--ok) 25%,transparent)}
.live.off i{background:var(--bad)}
main{max-width:1180px;margin:0 auto;padding:1rem 1.25rem 3rem}
.totals{display:grid;grid-template-columns:repeat(auto-fit,minmax(120px,1fr));gap:.6rem;margin-bottom:1rem}
.total{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:.6rem .8rem}
.total .n{font-size:1.35rem;font-weight:650}
.total .l{color:var(--muted);font-size:.78rem;text-transform:uppercase;letter-spacing:.05em}
.total.bad .n{color:var(--bad)}
.tools{display:flex;gap:.6rem;margin-bottom:1rem}
.tools input{flex:1;min-width:0;padding:.55rem .75rem;border:1px solid var(--line);border-radius:8px;background:var(--card);color:var(--fg);font:inherit}
section.org{margin-bottom:1.6rem}
.orghead{display:flex;align-items:baseline;gap:.6rem;flex-wrap:wrap;margin:.2rem 0 .6rem}
.orghead h2{margin:0;font-size:1.1rem}
.mono{font-family:var(--mono);font-size:.82rem}
.muted{color:var(--muted)}
.app{background:var(--card);border:1px solid var(--line);border-radius:12px;margin-bottom:.8rem;overflow:hidden}
.apphead{display:flex;align-items:center;gap:.6rem;flex-wrap:wrap;padding:.7rem .9rem;border-bottom:1px solid var(--line)}
.apphead h3{margin:0;font-size:1rem}
.chip{display:inline-block;padding:.1rem .5rem;border-radius:999px;background:var(--chip);font-size:.78rem;white-space:nowrap}
.chip.mono{font-size:.76rem}
.stats{margin-left:auto;display:flex;gap:.9rem;color:var(--muted);font-size:.85rem;flex-wrap:wrap}
.stats b{color:var(--fg);font-weight:600}
.stats .errs,.stats .errs b{color:var(--bad)}
.flycast{display:flex;gap:.4rem;flex-wrap:wrap;padding:.5rem .9rem;border-bottom:1px solid var(--line);align-items:center}
.region{padding:.35rem .9rem .5rem}
.region+.region{border-top:1px dashed var(--line)}
.rhead{display:flex;gap:.5rem;align-items:baseline;margin:.25rem 0}
.rcode{font-weight:700;text-transform:uppercase;font-size:.8rem;letter-spacing:.06em}
.machine{display:grid;grid-template-columns:1rem minmax(15rem,2fr) 5.5rem 6.5rem minmax(6rem,1.4fr) 4.5rem 5.5rem;gap:.5rem;align-items:center;padding:.3rem 0}
.dot{width:.7rem;height:.7rem;border-radius:50%;background:var(--off)}
.dot.healthy{background:var(--ok)}.dot.unhealthy{background:var(--bad)}.dot.unknown{background:var(--warn)}.dot.stopped{background:transparent;border:2px solid var(--off)}
.badge{font-size:.74rem;padding:.08rem .45rem;border-radius:6px;border:1px solid var(--line);text-align:center;white-space:nowrap}
.badge.started{color:var(--ok);border-color:color-mix(in srgb,var(--ok) 45%,transparent)}
.badge.stopped{color:var(--muted)}
.badge.healthy{color:var(--ok)}.badge.unhealthy{color:var(--bad);border-color:color-mix(in srgb,var(--bad) 45%,transparent)}.badge.unknown{color:var(--warn)}
.reason{color:var(--muted);font-size:.82rem;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.num{text-align:right;font-variant-numeric:tabular-nums;font-size:.85rem}
.num small{color:var(--muted)}
.mid{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.addr{display:block;color:var(--muted);font-size:.72rem;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.peers{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:.5rem .9rem}
.peer{display:grid;grid-template-columns:minmax(6rem,1fr) 4rem minmax(10rem,2fr);gap:.5rem;padding:.25rem 0}
.empty{padding:2.5rem 1rem;text-align:center;color:var(--muted)}
.login{max-width:380px;margin:12vh auto;background:var(--card);border:1px solid var(--line);border-radius:12px;padding:1.4rem}
.login h2{margin-top:0}
.login input{width:100%;padding:.6rem;border:1px solid var(--line);border-radius:8px;background:var(--bg);color:var(--fg);font:inherit;margin:.5rem 0}
.login button{padding:.55rem 1rem;border:0;border-radius:8px;background:var(--accent);color:#fff;font:inherit;cursor:pointer}
.err{color:var(--bad);min-height:1.2em}
[hidden]{display:none!important}
@media (max-width:700px){
 header{padding:.6rem .8rem}
 main{padding:.75rem .6rem 2rem}
 .stats{margin-left:0;width:100%}
 .totals{grid-template-columns:repeat(4,1fr);gap:.4rem}
 .total{padding:.45rem .55rem;border-radius:8px}
 .total .n{font-size:1.1rem}
 .total .l{font-size:.66rem;letter-spacing:.03em}
 .machine{grid-template-columns:1rem 1fr auto auto;row-gap:.15rem;padding:.45rem 0;border-bottom:1px solid var(--line)}
 .region .machine:last-child{border-bottom:0}
 .machine .reason{grid-column:2 / -1}
 .machine .num{grid-column:auto;text-align:left}
 .machine .conns{grid-column:2}
 .peer{grid-template-columns:1fr auto;}
 .peer .mono{grid-column:1 / -1}
}
`;

const SCRIPT = `
(function(){
'use strict';
var state={status:null,filter:'',es:null};
var $=function(tag,cls,text){var e=document.createElement(tag);if(cls)e.className=cls;if(text!==undefined&&text!==null)e.textContent=String(text);return e;};
var byId=function(id){return document.getElementById(id);};
function ago(ms){if(!ms)return '';var s=Math.max(0,Math.round((Date.now()-ms)/1000));if(s<60)return s+'s';if(s<3600)return Math.floor(s/60)+'m';if(s<86400)return Math.floor(s/3600)+'h';return Math.floor(s/86400)+'d';}
function fmtRate(r){if(r===null||r===undefined)return '\\u2013';return r>=100?Math.round(r).toString():r.toFixed(r>=10?1:2).replace(/\\.?0+$/,'');}
function fmtNum(n){return n===null||n===undefined?'\\u2013':String(n);}
function setLive(on,text){var l=byId('live');l.className='live '+(on?'on':'off');byId('livetext').textContent=text;}
function matches(f,parts){if(!f)return true;for(var i=0;i<parts.length;i++){if(String(parts[i]).toLowerCase().indexOf(f)>=0)return true;}return false;}
function total(n,label,bad){var d=$('div','total'+(bad?' bad':''));d.appendChild($('div','n',n));d.appendChild($('div','l',label));return d;}
function render(){
  var s=state.status;if(!s)return;
  byId('nodeinfo').textContent=s.node.name+' \\u00b7 '+s.node.region+' \\u00b7 catalog v'+s.catalog.version;
  var t=s.totals,tot=byId('totals');
  tot.replaceChildren(total(t.orgs,'orgs'),total(t.apps,'apps'),total(t.started+'/'+t.machines,'started'),total(t.healthy,'healthy'),total(t.unhealthy,'unhealthy',t.unhealthy>0),total(t.flycast,'flycast'),total(t.peers,'peers'));
  var f=state.filter,root=byId('orgs'),out=[];
  s.orgs.forEach(function(o){
    var sec=$('section','org');sec.dataset.org=o.name;
    var h=$('div','orghead');h.appendChild($('h2',null,o.name));h.appendChild($('span','mono muted',o.prefix));h.appendChild($('span','chip','network '+o.network_id));sec.appendChild(h);
    var shown=0;
    o.apps.forEach(function(a){
      var appHit=matches(f,[o.name,a.name]);
      var isHttp=a.services.some(function(x){return x.indexOf('http')===0;});
      var unit=isHttp?'req/s':'conn/s';
      var card=$('div','app');card.dataset.app=a.name;
      var ah=$('div','apphead');ah.appendChild($('h3',null,a.name));
      a.services.forEach(function(x){ah.appendChild($('span','chip mono',x));});
      var st=$('div','stats');
      var c1=$('span');c1.appendChild($('b',null,a.counts.healthy+'/'+a.counts.machines));c1.appendChild(document.createTextNode(' healthy'));
      var c2=$('span');c2.appendChild($('b',null,fmtRate(a.request_rate)));c2.appendChild(document.createTextNode(' '+unit));
      var c3=$('span');c3.appendChild($('b',null,fmtNum(a.active_connections)));c3.appendChild(document.createTextNode(' conns'));
      st.appendChild(c1);st.appendChild(c2);
      if(a.error_rate){var ce=$('span','errs');ce.appendChild($('b',null,fmtRate(a.error_rate)));ce.appendChild(document.createTextNode(' 5xx/s'));st.appendChild(ce);}
      st.appendChild(c3);ah.appendChild(st);card.appendChild(ah);
      var fc=$('div','flycast');fc.appendChild($('span','muted','flycast'));
      if(a.flycast.length===0)fc.appendChild($('span','muted','none'));
      a.flycast.forEach(function(ip){var c=$('span','chip mono',ip.address+(ip.org!==a.org?'  (in '+ip.org+')':''));c.dataset.flycast=ip.address;fc.appendChild(c);});
      card.appendChild(fc);
      var rows=0;
      a.regions.forEach(function(r){
        var ms=r.machines.filter(function(m){return appHit||matches(f,[m.id,m.region,m.state,m.health.status,m.address]);});
        if(ms.length===0)return;
        var rg=$('div','region');rg.dataset.region=r.region;
        var rh=$('div','rhead');rh.appendChild($('span','rcode',r.region));if(r.city)rh.appendChild($('span','muted',r.city));rg.appendChild(rh);
        ms.forEach(function(m){
          var row=$('div','machine');row.dataset.machineId=m.id;row.dataset.state=m.state;row.dataset.health=m.health.status;
          var cls=m.state==='stopped'?'stopped':m.health.status;
          var dot=$('span','dot '+cls);dot.title=m.state+', '+m.health.status;row.appendChild(dot);
          var idc=$('div','mid');idc.appendChild($('span','mono',m.id));idc.appendChild($('span','addr mono',m.address+(m.upstream?'  \\u2192 '+m.upstream:'')));row.appendChild(idc);
          row.appendChild($('span','badge state '+m.state,m.state));
          var hb=$('span','badge health '+m.health.status,m.health.status);hb.title='since '+ago(m.health.changed_at)+' ago';row.appendChild(hb);
          var rs=$('span','reason',m.health.reason||(m.health.changed_at?'for '+ago(m.health.changed_at):''));rs.title=m.health.reason;row.appendChild(rs);
          var cn=$('span','num conns');cn.appendChild(document.createTextNode(fmtNum(m.active_connections)));cn.appendChild($('small',null,' conns'));row.appendChild(cn);
          var rt=$('span','num rate');rt.appendChild(document.createTextNode(fmtRate(m.request_rate)));rt.appendChild($('small',null,' '+unit));row.appendChild(rt);
          rg.appendChild(row);rows++;
        });
        card.appendChild(rg);
      });
      if(rows===0&&!appHit)return;
      if(rows===0){var e=$('div','region muted','no machines');card.appendChild(e);}
      sec.appendChild(card);shown++;
    });
    var peers=o.peers.filter(function(p){return matches(f,[o.name,p.name,p.region,p.address]);});
    if(peers.length){
      var pb=$('div','peers');pb.appendChild($('div','muted','WireGuard peers'));
      peers.forEach(function(p){var r=$('div','peer');r.dataset.peer=p.name;r.appendChild($('b',null,p.name));r.appendChild($('span','rcode',p.region));r.appendChild($('span','mono muted',p.address));pb.appendChild(r);});
      sec.appendChild(pb);shown++;
    }
    if(shown>0||matches(f,[o.name]))out.push(sec);
  });
  if(out.length===0)out.push($('div','empty',s.orgs.length?'Nothing matches the filter.':'The catalog is empty: create an org and an app with the sixpn CLI.'));
  root.replaceChildren.apply(root,out);
  byId('updated').textContent='updated '+new Date(s.generated_at).toLocaleTimeString();
}
function showLogin(msg){byId('app').hidden=true;byId('login').hidden=false;byId('loginerr').textContent=msg||'';setLive(false,'signed out');}
function showApp(){byId('login').hidden=true;byId('app').hidden=false;}
function follow(){
  if(state.es)state.es.close();
  var es=new EventSource('/v1/status/events');state.es=es;
  es.addEventListener('status',function(ev){try{state.status=JSON.parse(ev.data);setLive(true,'live');render();}catch(e){}});
  es.onopen=function(){setLive(true,'live');};
  es.onerror=function(){setLive(false,'reconnecting\\u2026');if(es.readyState===2){state.es=null;setTimeout(start,2000);}};
}
function start(){
  fetch('/v1/status',{credentials:'same-origin',cache:'no-store'}).then(function(r){
    if(r.status===401){showLogin();return null;}
    if(!r.ok)throw new Error('HTTP '+r.status);
    return r.json();
  }).then(function(s){if(!s)return;showApp();state.status=s;render();follow();})
  .catch(function(){setLive(false,'offline');setTimeout(start,3000);});
}
byId('filter').addEventListener('input',function(e){state.filter=e.target.value.trim().toLowerCase();render();});
byId('loginform').addEventListener('submit',function(e){
  e.preventDefault();
  fetch('/dashboard/session',{method:'POST',credentials:'same-origin',headers:{'content-type':'text/plain'},body:byId('token').value.trim()})
  .then(function(r){if(r.ok){byId('token').value='';start();}else showLogin('That token was not accepted.');})
  .catch(function(){showLogin('The node did not answer.');});
});
setInterval(function(){if(state.status)render();},15000);
start();
})();
`;

const sha256 = (s: string): string => `'sha256-${createHash('sha256').update(s).digest('base64')}'`;

export const DASHBOARD_CSP = [
  "default-src 'none'",
  `script-src ${sha256(SCRIPT)}`,
  `style-src ${sha256(STYLE)}`,
  "connect-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<link rel="icon" href="data:,">
<title>sixpn dashboard</title>
<style>${STYLE}</style>
</head>
<body>
<header>
<span class="brand">six<b>pn</b></span>
<span class="nodeinfo" id="nodeinfo"></span>
<span class="live" id="live"><i></i><span id="livetext">connecting\u2026</span></span>
</header>
<div id="login" class="login" hidden>
<h2>Sign in</h2>
<p class="muted">Paste the node's admin token (<span class="mono">[control] token</span> or <span class="mono">SIXPN_TOKEN</span>). It is exchanged for a read-only cookie.</p>
<form id="loginform"><input id="token" type="password" autocomplete="off" placeholder="admin token" aria-label="admin token"><button type="submit">Open dashboard</button></form>
<p class="err" id="loginerr"></p>
</div>
<main id="app">
<div class="totals" id="totals"></div>
<div class="tools"><input id="filter" type="search" placeholder="Filter by org, app, machine, region\u2026" aria-label="filter"></div>
<div id="orgs"></div>
<p class="muted" id="updated"></p>
</main>
<script>${SCRIPT}</script>
</body>
</html>
`;
