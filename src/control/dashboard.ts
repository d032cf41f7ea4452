/**
 * The health dashboard: one page (inline CSS and JS, no build step, no CDN) that reads
 * /v1/status, /v1/status/series and /v1/events once and then follows /v1/status/events:
 * live charts of the last 15 minutes per app and machine (uPlot, served by this node from
 * the npm package, see ./assets.ts), a region view, an event feed, and the catalog tree.
 *
 * The page itself carries no catalog data, so serving it needs no token; the data routes do.
 * Every catalog string reaches the DOM through textContent (never innerHTML), and the
 * Content-Security-Policy admits only this exact script and style (by hash), so a hostile app
 * or machine name cannot run script even if a rendering bug slipped in.
 */
import { createHash } from 'node:crypto';
import { UPLOT_CSS, UPLOT_JS, UPLOT_SRI, UPLOT_URL } from './assets.js';

const STYLE = `${UPLOT_CSS}
:root{--bg:#f6f7f9;--card:#fff;--fg:#1d2433;--muted:#677086;--line:#e3e6ec;--chip:#eef1f6;--ok:#16a34a;--bad:#dc2626;--warn:#d97706;--off:#9aa3b2;--accent:#5b4bdb;--mono:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
@media (prefers-color-scheme:dark){:root{--bg:#10131a;--card:#181c25;--fg:#e6e9ef;--muted:#939cb0;--line:#2a303c;--chip:#222835;--accent:#9d92ff;--off:#5d6678}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
header{position:sticky;top:0;z-index:2;display:flex;align-items:center;gap:.75rem;flex-wrap:wrap;padding:.7rem 1.25rem;background:var(--card);border-bottom:1px solid var(--line)}
.brand{font-weight:700;font-size:1.05rem;letter-spacing:.02em}
.brand b{color:var(--accent)}
.nodeinfo{color:var(--muted)}
.catalog-banner{margin:0 0 12px;padding:10px 14px;border-radius:6px;background:#b3261e;color:#fff;font-weight:600}
.catalog-banner.snapshot{background:#8a5a00}
.catalog-banner p{margin:4px 0 0;font-weight:400}
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
.hosts{display:flex;gap:.4rem;flex-wrap:wrap;margin-bottom:1rem;align-items:center}
.host{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:.25rem .6rem;font-size:.82rem}
.host.unreachable,.host.down{border-color:color-mix(in srgb,var(--bad) 45%,transparent);color:var(--bad)}
.badge.failed{color:var(--bad);border-color:color-mix(in srgb,var(--bad) 45%,transparent)}
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
.panels{display:grid;grid-template-columns:minmax(0,3fr) minmax(0,2fr);gap:.8rem;margin-bottom:1rem}
.panel{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:.6rem .9rem;min-width:0}
.panel h2{margin:0 0 .4rem;font-size:.95rem}
.panel h2 .muted{font-weight:400;font-size:.8rem}
.rview{width:100%;border-collapse:collapse;font-size:.85rem}
.rview th,.rview td{padding:.2rem .35rem;text-align:left;white-space:nowrap}
.rview th{color:var(--muted);font-weight:500;font-size:.72rem;text-transform:uppercase;letter-spacing:.04em}
.rview .num{text-align:right}
.rview .warnc{color:var(--warn)}
.sharecell{width:38%}
.bar{display:inline-block;height:.5rem;width:0;border-radius:3px;background:var(--accent);vertical-align:middle;margin-right:.4rem;max-width:70%}
.share{font-variant-numeric:tabular-nums}
.feed{list-style:none;margin:0;padding:0;max-height:19rem;overflow-y:auto;font-size:.82rem}
.feed li{display:grid;grid-template-columns:4.3rem 4.6rem minmax(0,1fr);gap:.4rem;padding:.22rem 0;border-bottom:1px solid var(--line)}
.feed li:last-child{border-bottom:0}
.feed li.muted{display:block}
.feed time{color:var(--muted);font-variant-numeric:tabular-nums}
.kind{font-size:.7rem;padding:0 .35rem;border-radius:5px;background:var(--chip);text-align:center;align-self:start}
.kind.warn{color:var(--warn)}.kind.error{color:var(--bad)}
.msg{overflow-wrap:anywhere}
details.charts{border-bottom:1px solid var(--line)}
details.charts summary{padding:.35rem .9rem;color:var(--muted);font-size:.8rem;cursor:pointer}
.chartgrid{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:.3rem .9rem;padding:.1rem .9rem .6rem}
.chart{min-width:0}
.chart h4{margin:.25rem 0 .1rem;font-size:.74rem;color:var(--muted);font-weight:500}
.chart .plot{width:100%;min-height:110px;overflow:hidden}
.lg{display:flex;flex-wrap:wrap;gap:.1rem .6rem;font-size:.7rem;color:var(--muted)}
.lg i{display:inline-block;width:.55rem;height:.55rem;border-radius:2px;margin-right:.25rem;vertical-align:middle}
.lg b{color:var(--fg);font-weight:600;font-variant-numeric:tabular-nums}
.rshare{margin-left:auto;font-size:.8rem}
.notraffic{padding:.35rem .9rem;font-size:.8rem;border-bottom:1px solid var(--line)}
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
 .panels{grid-template-columns:1fr;gap:.6rem}
 .panel{padding:.5rem .6rem}
 .rview th,.rview td{padding:.15rem .2rem}
 .rview .city{display:none}
 .feed li{grid-template-columns:4rem minmax(0,1fr)}
 .feed .kind{justify-self:start}
 .feed .msg{grid-column:1 / -1}
 .chartgrid{grid-template-columns:1fr;padding:.1rem .6rem .5rem}
 .peer .mono{grid-column:1 / -1}
}
`;

const SCRIPT = `
(function(){
'use strict';
var WINDOW_MS=900000,ERR_WINDOW_MS=10000;
var state={status:null,filter:'',es:null,paused:false,events:[],lastSeq:0,open:{},pid:null,history:{}};
// The series of the last 15 minutes: times, and per holder (app, machine, app region, region, node) its columns.
var S={times:[],xs:[],h:{},regions:[]};
var charts={};
var hasCharts=typeof window.uPlot==='function';
var PALETTE=['#5b4bdb','#16a34a','#d97706','#0891b2','#db2777','#65a30d','#9333ea','#ea580c','#0d9488','#64748b'];
var $=function(tag,cls,text){var e=document.createElement(tag);if(cls)e.className=cls;if(text!==undefined&&text!==null)e.textContent=String(text);return e;};
var byId=function(id){return document.getElementById(id);};
function ago(ms){if(!ms)return '';var s=Math.max(0,Math.round((Date.now()-ms)/1000));if(s<60)return s+'s';if(s<3600)return Math.floor(s/60)+'m';if(s<86400)return Math.floor(s/3600)+'h';return Math.floor(s/86400)+'d';}
function fmtRate(r){if(r===null||r===undefined||r!==r)return '\\u2013';return r>=100?Math.round(r).toString():r.toFixed(r>=10?1:2).replace(/\\.?0+$/,'');}
function fmtNum(n){return n===null||n===undefined?'\\u2013':String(n);}
function fmtPct(v){return v===null||v===undefined?'\\u2013':Math.round(v*100)+'%';}
// The header dot: 'on' (following), 'off' (a fault: red) or 'idle' (paused by the page itself: grey).
function setLive(dot,text){byId('live').className='live '+dot;byId('livetext').textContent=text;}
function matches(f,parts){if(!f)return true;for(var i=0;i<parts.length;i++){if(String(parts[i]).toLowerCase().indexOf(f)>=0)return true;}return false;}
function total(n,label,bad,live){var d=$('div','total'+(bad?' bad':''));var v=$('div','n',n);if(live){v.dataset.live=live;}d.appendChild(v);d.appendChild($('div','l',label));return d;}
function getJSON(url){return fetch(url,{credentials:'same-origin',cache:'no-store'}).then(function(r){if(r.status===401){var e=new Error('signed out');e.status=401;throw e;}if(!r.ok)throw new Error('HTTP '+r.status);return r.json();});}

// ---- series: merged from /v1/status/series and the stream's 'points' frames
function nulls(n){var a=new Array(n);for(var i=0;i<n;i++)a[i]=null;return a;}
function merge(doc){
  var k=doc.times.length;if(!k)return false;
  var n0=S.times.length,last=n0?S.times[n0-1]:0,skip=0;
  while(skip<k&&doc.times[skip]<=last)skip++;
  if(skip===k)return false;
  S.times=S.times.concat(doc.times.slice(skip));
  var newest=S.times[S.times.length-1];
  function put(key,series){
    var h=S.h[key];if(!h)h=S.h[key]={s:{}};
    h.seen=newest;
    if(series)Object.keys(series).forEach(function(col){h.s[col]=(h.s[col]||nulls(n0)).concat(series[col].slice(skip));});
    return h;
  }
  put('n',doc.node_series);
  doc.apps.forEach(function(a){
    var h=put('a:'+a.name,a.series);h.unit=a.unit;h.shareOf=a.share_of;if(a.series)h.hasData=true;
    h.machines=a.machines.map(function(m){var mh=put('m:'+a.name+'/'+m.id,m.series);mh.region=m.region;return m.id;});
    h.regions=a.regions.map(function(r){put('r:'+a.name+'/'+r.region,r.series);return r.region;});
  });
  S.regions=doc.regions.map(function(r){var h=put('g:'+r.region,r.series);h.city=r.city;h.machines=r.machines;h.started=r.started;h.healthy=r.healthy;return r.region;});
  var n=S.times.length,cut=0,from=newest-WINDOW_MS;
  while(cut<n&&S.times[cut]<=from)cut++;
  if(cut)S.times=S.times.slice(cut);
  Object.keys(S.h).forEach(function(key){
    var h=S.h[key];
    if(h.seen<=from){delete S.h[key];return;}
    Object.keys(h.s).forEach(function(col){var a=h.s[col];if(a.length<n)a=a.concat(nulls(n-a.length));h.s[col]=cut?a.slice(cut):a;});
  });
  S.xs=S.times.map(function(t){return t/1000;});
  return true;
}
// One app's whole history with its machines, fetched when its charts are first shown: each
// point goes where its time is in S (the page's own points win where both have one).
function backfill(doc){
  var idx={};doc.times.forEach(function(t,i){idx[t]=i;});
  var pos=S.times.map(function(t){return idx[t];}),newest=S.times[S.times.length-1];
  doc.apps.forEach(function(a){
    a.machines.forEach(function(m){
      if(!m.series)return;
      var key='m:'+a.name+'/'+m.id,h=S.h[key]||(S.h[key]={s:{}});h.region=m.region;h.seen=newest;
      Object.keys(m.series).forEach(function(c){
        var src=m.series[c],cur=h.s[c]||nulls(S.times.length);
        h.s[c]=pos.map(function(p,i){var v=cur[i];return v!==null&&v!==undefined?v:(p===undefined?null:src[p]);});
      });
    });
    var ah=S.h['a:'+a.name];if(ah)ah.machines=a.machines.map(function(m){return m.id;});
  });
}
function ensureHistory(app,grid){
  if(state.history[app])return;
  state.history[app]='loading';
  getJSON('/v1/status/series?app='+encodeURIComponent(app)).then(function(doc){state.history[app]='done';backfill(doc);fillCharts(app,grid);applyLive();},function(){state.history[app]=null;});
}
function lastOf(a){if(!a)return null;for(var i=a.length-1;i>=0;i--)if(a[i]!==null)return a[i];return null;}
function newest(a){return a&&a.length?a[a.length-1]:null;}
function meanOver(a,ms){if(!a||!S.times.length)return null;var from=S.times[S.times.length-1]-ms,sum=0,n=0;for(var i=a.length-1;i>=0&&S.times[i]>from;i--){if(a[i]!==null){sum+=a[i];n++;}}return n?sum/n:null;}
function col(key,c){var h=S.h[key];return h&&h.s[c];}
// Live figures: the newest point (rates, shares: no traffic now is no share, not the last one), 5xx over the last 10 s (so one error stays visible).
function liveValue(kind,key){
  switch(kind){
    case 'app-rate':return newest(col('a:'+key,'rate'));
    case 'app-err':return meanOver(col('a:'+key,'errors_5xx'),ERR_WINDOW_MS);
    case 'app-active':return newest(col('a:'+key,'active'));
    case 'm-rate':return newest(col('m:'+key,'rate'));
    case 'm-active':return newest(col('m:'+key,'active'));
    case 'r-share':return newest(col('r:'+key,'share'));
    case 'g-share':return newest(col('g:'+key,'share'));
    case 'g-rate':return newest(col('g:'+key,'rate'));
    case 'node-rate':return newest(col('n','rate'));
  }
  return null;
}
function holderKey(kind,key){var p=kind.slice(0,kind.indexOf('-'));return p==='node'?'n':({app:'a:',m:'m:',r:'r:',g:'g:'})[p]+key;}
// Writes the live figures into every element that names one (data-live, data-key); until the series know it, the status value stays.
function applyLive(root){
  if(!S.times.length)return;
  var els=(root||document).querySelectorAll('[data-live]');
  for(var i=0;i<els.length;i++){
    var el=els[i],kind=el.dataset.live,key=el.dataset.key||'';
    if(!S.h[holderKey(kind,key)])continue;
    var v=liveValue(kind,key);
    if(kind==='app-err'){el.parentNode.hidden=!(v>0);el.textContent=fmtRate(v);}
    else if(kind==='r-share'||kind==='g-share'){el.textContent=fmtPct(v);var bar=el.parentNode.querySelector('.bar');if(bar)bar.style.width=Math.round((v||0)*100)+'%';}
    else el.textContent=kind.indexOf('active')>=0?fmtNum(v):fmtRate(v);
  }
}

// ---- charts (uPlot)
function color(i){return PALETTE[i%PALETTE.length];}
function pct(a){return a?a.map(function(v){return v===null?null:Math.round(v*1000)/10;}):a;}
function cssVar(name,dflt){var v=getComputedStyle(document.documentElement).getPropertyValue(name).trim();return v||dflt;}
function appSpecs(app){
  var a=S.h['a:'+app];if(!a)return [];
  var http=a.unit==='requests',ms=a.machines||[],out=[],fg=cssVar('--fg','#1d2433');
  var rs=[{label:'total',data:a.s.rate,color:fg}];
  if(http)ms.forEach(function(id,i){var d=col('m:'+app+'/'+id,'rate');if(d)rs.push({label:id.slice(0,8),data:d,color:color(i)});});
  out.push({id:'rate',title:http?'requests/s':'connections/s',series:rs});
  var es=http?[{label:'4xx',data:a.s.errors_4xx,color:'#d97706'},{label:'5xx',data:a.s.errors_5xx,color:'#dc2626'}]:[];
  es.push({label:'connect',data:a.s.errors_connect,color:'#9333ea'});
  out.push({id:'errors',title:'errors/s',series:es});
  if(http)out.push({id:'latency',title:'latency ms',series:[{label:'p50',data:a.s.p50_ms,color:'#0891b2'},{label:'p99',data:a.s.p99_ms,color:'#db2777'}]});
  var as=[];ms.forEach(function(id,i){var d=col('m:'+app+'/'+id,'active');if(d)as.push({label:id.slice(0,8),data:d,color:color(i)});});
  out.push({id:'active',title:'active connections',series:as.length?as:[{label:'total',data:a.s.active,color:fg}]});
  var sh=[];(a.regions||[]).forEach(function(r,i){var d=col('r:'+app+'/'+r,'share');if(d)sh.push({label:r,data:pct(d),color:color(i)});});
  out.push({id:'share',title:'share by region %'+(http?'':' (connections)'),series:sh,max:100});
  return out;
}
function regionSpec(){
  var sh=[];S.regions.forEach(function(r,i){var d=col('g:'+r,'share');if(d)sh.push({label:r,data:pct(d),color:color(i)});});
  return {id:'share',title:'HTTP traffic share by region %',series:sh,max:100};
}
var resizer=hasCharts&&typeof ResizeObserver==='function'?new ResizeObserver(function(entries){entries.forEach(function(en){var c=en.target.__chart;var w=Math.floor(en.contentRect.width);if(c&&c.u&&w>0&&w!==c.w){c.w=w;c.u.setSize({width:w,height:110});}});}):null;
function plotData(spec){return [S.xs].concat(spec.series.map(function(x){return x.data||nulls(S.xs.length);}));}
function makePlot(c,spec){
  var muted=cssVar('--muted','#677086'),line=cssVar('--line','#e3e6ec');
  var axis=function(size){return {stroke:muted,grid:{stroke:line,width:1},ticks:{show:false},font:'10px system-ui,sans-serif',size:size,space:40};};
  var xaxis=axis(20);xaxis.space=64;xaxis.incrs=[1,5,10,15,30,60,120,300,600,900];
  xaxis.values=function(u,splits){var span=(u.scales.x.max||0)-(u.scales.x.min||0);return splits.map(function(t){var c=clock(t*1000);return span>600?c.slice(0,5):c;});};
  var max=spec.max;
  var opts={width:Math.max(120,c.plot.clientWidth||280),height:110,legend:{show:false},cursor:{drag:{x:false,y:false},points:{size:5}},
    scales:{x:{time:true},y:{range:function(u,lo,hi){return [0,max||Math.max(1,(hi||0)*1.15)];}}},
    axes:[xaxis,axis(34)],
    series:[{}].concat(spec.series.map(function(x){return {label:x.label,stroke:x.color,width:1.5,points:{show:false}};}))};
  c.w=opts.width;
  return new window.uPlot(opts,plotData(spec),c.plot);
}
function chartEl(key,spec){
  var c=charts[key];
  if(!c){
    var el=$('div','chart');el.dataset.chart=spec.id;el.appendChild($('h4',null,spec.title));
    var plot=$('div','plot');el.appendChild(plot);var lg=$('div','lg');el.appendChild(lg);
    c=charts[key]={el:el,plot:plot,lg:lg,u:null,sig:''};plot.__chart=c;if(resizer)resizer.observe(plot);
  }
  c.used=true;
  var sig=spec.series.map(function(x){return x.label;}).join(',');
  if(hasCharts&&S.xs.length){
    if(!c.u||c.sig!==sig){if(c.u)c.u.destroy();c.u=makePlot(c,spec);c.sig=sig;}
    else c.u.setData(plotData(spec));
  }
  var items=spec.series.map(function(x){var s=$('span','lgi');s.dataset.series=x.label;var mk=$('i');mk.style.background=x.color;s.appendChild(mk);s.appendChild(document.createTextNode(x.label+' '));s.appendChild($('b',null,fmtRate(lastOf(x.data))));return s;});
  c.lg.replaceChildren.apply(c.lg,items);
  return c.el;
}
function fillCharts(app,grid){ensureHistory(app,grid);grid.replaceChildren.apply(grid,appSpecs(app).map(function(sp){return chartEl(app+' '+sp.id,sp);}));}
function updateCharts(){
  var grids=document.querySelectorAll('details.charts[open] .chartgrid');
  for(var i=0;i<grids.length;i++)fillCharts(grids[i].dataset.app,grids[i]);
  var rg=byId('regionchart');if(rg&&S.regions.length)rg.replaceChildren(chartEl(' regions',regionSpec()));
}
function dropUnused(){Object.keys(charts).forEach(function(k){var c=charts[k];if(!c.used){if(c.u)c.u.destroy();if(resizer)resizer.unobserve(c.plot);delete charts[k];}else c.used=false;});}

// ---- region view and event feed
function renderRegions(){
  var body=byId('regionrows'),rows=[];
  S.regions.forEach(function(r){
    var h=S.h['g:'+r];if(!h)return;
    var tr=$('tr');tr.dataset.regionRow=r;
    var c0=$('td');c0.appendChild($('span','rcode',r));if(h.city)c0.appendChild($('span','muted city',' '+h.city));tr.appendChild(c0);
    tr.appendChild($('td','num started',h.started+'/'+h.machines));
    tr.appendChild($('td','num healthy'+(h.healthy<h.started?' warnc':''),h.healthy));
    var sc=$('td','sharecell');var bar=$('span','bar');sc.appendChild(bar);var sv=$('span','share');sv.dataset.live='g-share';sv.dataset.key=r;sc.appendChild(sv);tr.appendChild(sc);
    var rc=$('td','num');var rv=$('span');rv.dataset.live='g-rate';rv.dataset.key=r;rc.appendChild(rv);tr.appendChild(rc);
    rows.push(tr);
  });
  if(rows.length===0){var tr=$('tr');var td=$('td','muted','No machines yet.');td.colSpan=5;tr.appendChild(td);rows.push(tr);}
  body.replaceChildren.apply(body,rows);
  applyLive(body);
}
function addEvent(e){
  if(e.seq<=state.lastSeq)return false;
  state.lastSeq=e.seq;state.events.push(e);
  if(state.events.length>200)state.events.splice(0,state.events.length-200);
  return true;
}
function clock(ms){var d=new Date(ms);return [d.getHours(),d.getMinutes(),d.getSeconds()].map(function(n){return n<10?'0'+n:String(n);}).join(':');}
function renderFeed(){
  var f=state.filter,list=byId('feed'),out=[];
  for(var i=state.events.length-1;i>=0&&out.length<100;i--){
    var e=state.events[i];
    if(!matches(f,[e.kind,e.message,e.app||'',e.machine||'',e.org||'',e.region||'']))continue;
    var li=$('li');li.dataset.kind=e.kind;if(e.machine)li.dataset.machine=e.machine;
    var t=$('time',null,clock(e.at));t.title=new Date(e.at).toLocaleString();li.appendChild(t);
    li.appendChild($('span','kind '+e.level,e.kind));
    li.appendChild($('span','msg',e.message));
    out.push(li);
  }
  if(out.length===0)out.push($('li','muted empty-feed',state.events.length?'Nothing matches the filter.':'Nothing happened yet: health transitions, stops and starts, ejections, catalog changes and denied callers show here.'));
  list.replaceChildren.apply(list,out);
}

// ---- the catalog tree (as before), with live figures and charts per app
function render(){
  var s=state.status;if(!s)return;
  state.drawn=withData();
  byId('nodeinfo').textContent=s.node.name+' \\u00b7 '+s.node.region+' \\u00b7 catalog v'+s.catalog.version;
  var cb=byId('catalogbanner'),cs=s.catalog.state||'ok';cb.hidden=cs==='ok';cb.className='catalog-banner '+cs;
  if(cs!=='ok'){cb.replaceChildren($('span',null,cs==='diverged'?'Catalog diverged: writes are refused; this node serves its last good view.':'Catalog store unreachable: this node serves its snapshot; writes are refused.'),$('p',null,s.catalog.message||''));}
  var t=s.totals,tot=byId('totals');
  tot.replaceChildren(total(t.orgs,'orgs'),total(t.apps,'apps'),total(t.started+'/'+t.machines,'started'),total(t.healthy,'healthy'),total(t.unhealthy,'unhealthy',t.unhealthy>0),total(t.flycast,'flycast'),total(t.peers,'peers'),total('\\u2013','req/s',false,'node-rate'));
  var hs=byId('hosts');hs.replaceChildren();
  (s.hosts||[]).forEach(function(h){var c=$('span','host '+h.status);c.dataset.host=h.name;c.appendChild($('b',null,h.name));c.appendChild(document.createTextNode(' '+h.region+' \u00b7 '+h.status+' \u00b7 '+h.started+'/'+h.machines+' started \u00b7 host id '+h.host_id));c.title='driver '+h.driver+', last heartbeat '+ago(h.heartbeat_at)+' ago';hs.appendChild(c);});
  var f=state.filter,root=byId('orgs'),out=[],phone=window.matchMedia('(max-width: 700px)').matches,first=true;
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
      var c2=$('span');var rb=$('b',null,fmtRate(a.request_rate));rb.dataset.live='app-rate';rb.dataset.key=a.name;c2.appendChild(rb);c2.appendChild(document.createTextNode(' '+unit));
      var c3=$('span');var ab=$('b',null,fmtNum(a.active_connections));ab.dataset.live='app-active';ab.dataset.key=a.name;c3.appendChild(ab);c3.appendChild(document.createTextNode(' conns'));
      var ce=$('span','errs');ce.hidden=!a.error_rate;var eb=$('b',null,fmtRate(a.error_rate));eb.dataset.live='app-err';eb.dataset.key=a.name;ce.appendChild(eb);ce.appendChild(document.createTextNode(' 5xx/s'));
      st.appendChild(c1);st.appendChild(c2);st.appendChild(ce);st.appendChild(c3);ah.appendChild(st);card.appendChild(ah);
      var fc=$('div','flycast');fc.appendChild($('span','muted','flycast'));
      if(a.flycast.length===0)fc.appendChild($('span','muted','none'));
      a.flycast.forEach(function(ip){var c=$('span','chip mono',ip.address+(ip.org!==a.org?'  (in '+ip.org+')':''));c.dataset.flycast=ip.address;fc.appendChild(c);});
      card.appendChild(fc);
      var sh=S.h['a:'+a.name];
      if(hasCharts&&sh&&sh.hasData){
        var det=$('details','charts');det.dataset.app=a.name;
        var open=state.open[a.name];det.open=open===undefined?(!phone||first):open;first=false;
        det.appendChild($('summary',null,'charts, last 15 minutes'));
        var grid=$('div','chartgrid');grid.dataset.app=a.name;det.appendChild(grid);
        if(det.open)fillCharts(a.name,grid);
        det.addEventListener('toggle',function(){state.open[a.name]=det.open;if(det.open)fillCharts(a.name,grid);});
        card.appendChild(det);
      }else if(hasCharts&&S.times.length)card.appendChild($('div','notraffic muted','No traffic through this node\u2019s proxy in the last 15 minutes.'));
      var rows=0;
      a.regions.forEach(function(r){
        var ms=r.machines.filter(function(m){return appHit||matches(f,[m.id,m.region,m.state,m.health.status,m.address,m.host||'']);});
        if(ms.length===0)return;
        var rg=$('div','region');rg.dataset.region=r.region;
        var rh=$('div','rhead');rh.appendChild($('span','rcode',r.region));if(r.city)rh.appendChild($('span','muted',r.city));
        var shw=$('span','rshare muted');shw.appendChild(document.createTextNode('share '));var sv=$('b','share','\\u2013');sv.dataset.live='r-share';sv.dataset.key=a.name+'/'+r.region;shw.appendChild(sv);rh.appendChild(shw);
        rg.appendChild(rh);
        ms.forEach(function(m){
          var row=$('div','machine');row.dataset.machineId=m.id;row.dataset.state=m.state;row.dataset.health=m.health.status;
          var cls=m.state==='started'?m.health.status:'stopped';if(m.host)row.dataset.host=m.host;
          var dot=$('span','dot '+cls);dot.title=m.state+', '+m.health.status;row.appendChild(dot);
          var idc=$('div','mid');idc.appendChild($('span','mono',m.id));idc.appendChild($('span','addr mono',m.address+(m.upstream?'  \\u2192 '+m.upstream:'')+(m.host?'  on '+m.host:'')));row.appendChild(idc);
          row.appendChild($('span','badge state '+m.state,m.state));
          var hb=$('span','badge health '+m.health.status,m.health.status);hb.title='since '+ago(m.health.changed_at)+' ago';row.appendChild(hb);
          var rs=$('span','reason',m.health.reason||(m.health.changed_at?'for '+ago(m.health.changed_at):''));rs.title=m.health.reason;row.appendChild(rs);
          var cn=$('span','num conns');var cv=$('span','v',fmtNum(m.active_connections));cv.dataset.live='m-active';cv.dataset.key=a.name+'/'+m.id;cn.appendChild(cv);cn.appendChild($('small',null,' conns'));row.appendChild(cn);
          var rt=$('span','num rate');var rv=$('span','v',fmtRate(m.request_rate));if(isHttp){rv.dataset.live='m-rate';rv.dataset.key=a.name+'/'+m.id;}rt.appendChild(rv);rt.appendChild($('small',null,' '+unit));row.appendChild(rt);
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
  updateCharts();
  dropUnused();
  applyLive();
  byId('updated').textContent='updated '+new Date(s.generated_at).toLocaleTimeString();
}
function withData(){var n=0;if(state.status)state.status.orgs.forEach(function(o){o.apps.forEach(function(a){var h=S.h['a:'+a.name];if(h&&h.hasData)n++;});});return n;}
function onPoints(doc){
  var before=S.regions.join(',');
  if(!merge(doc))return;
  if(S.regions.join(',')!==before)renderRegions();
  // An app that just got its first traffic needs the tree drawn again; otherwise the figures and charts move.
  if(withData()!==state.drawn)render();else{updateCharts();applyLive();}
  renderRegionCounts();
}
function renderRegionCounts(){
  var rows=document.querySelectorAll('#regionrows tr[data-region-row]');
  for(var i=0;i<rows.length;i++){var h=S.h['g:'+rows[i].dataset.regionRow];if(!h)continue;var tds=rows[i].children;tds[1].textContent=h.started+'/'+h.machines;tds[2].textContent=h.healthy;tds[2].className='num healthy'+(h.healthy<h.started?' warnc':'');}
  applyLive(byId('regionrows'));
}
function resetLive(){S={times:[],xs:[],h:{},regions:[]};state.events=[];state.lastSeq=0;state.history={};}
function loadLive(){
  var since=S.times.length?S.times[S.times.length-1]:0;
  return Promise.all([
    // Apps and regions first; an app's machines when its charts are shown (a big fleet stays light).
    getJSON('/v1/status/series?machines=0'+(since?'&since='+since:'')).then(onPoints,function(){}),
    getJSON('/v1/events?limit=100'+(state.lastSeq?'&since='+state.lastSeq:'')).then(function(r){r.events.forEach(addEvent);renderFeed();},function(){})
  ]);
}
function showLogin(msg){byId('app').hidden=true;byId('login').hidden=false;byId('loginerr').textContent=msg||'';setLive('off','signed out');}
function showApp(){byId('login').hidden=true;byId('app').hidden=false;}
function onStatus(s){
  // Another process behind the same address (a restart): its series and events start over.
  if(state.pid!==null&&s.node.pid!==state.pid){resetLive();state.status=s;state.pid=s.node.pid;loadLive().then(function(){renderRegions();render();});return;}
  state.pid=s.node.pid;state.status=s;render();
}
function follow(){
  if(state.es)state.es.close();
  var es=new EventSource('/v1/status/events');state.es=es;var broken=false;
  es.addEventListener('status',function(ev){try{setLive('on','live');onStatus(JSON.parse(ev.data));}catch(e){}});
  es.addEventListener('points',function(ev){try{onPoints(JSON.parse(ev.data));}catch(e){}});
  es.addEventListener('feed',function(ev){try{if(addEvent(JSON.parse(ev.data)))renderFeed();}catch(e){}});
  es.onopen=function(){setLive('on','live');if(broken){broken=false;loadLive();}};
  es.onerror=function(){broken=true;setLive('off','reconnecting\\u2026');if(es.readyState===2){state.es=null;setTimeout(start,2000);}};
  if(document.hidden)pauseLater();
}
function start(){
  getJSON('/v1/status').then(function(s){
    showApp();state.status=s;state.pid=s.node.pid;
    return loadLive().then(function(){renderRegions();render();renderFeed();follow();});
  }).catch(function(e){if(e&&e.status===401){showLogin();return;}setLive('off','offline');setTimeout(start,3000);});
}
byId('filter').addEventListener('input',function(e){state.filter=e.target.value.trim().toLowerCase();render();renderFeed();});
byId('loginform').addEventListener('submit',function(e){
  e.preventDefault();
  fetch('/dashboard/session',{method:'POST',credentials:'same-origin',headers:{'content-type':'text/plain'},body:byId('token').value.trim()})
  .then(function(r){if(r.ok){byId('token').value='';start();}else showLogin('That token was not accepted.');})
  .catch(function(){showLogin('The node did not answer.');});
});
// A hidden tab lets go of its stream after PAUSE_MS and catches up when shown again: browsers
// keep at most 6 HTTP/1.1 connections per host, so a few dashboards left open in background
// tabs would otherwise hold them all and the next tab (or any API call from a page) would hang.
// A tab opened in the background follows first and lets go PAUSE_MS later, like any other.
var PAUSE_MS=5000,pauseTimer=null;
function pauseLater(){
  if(pauseTimer)return;
  pauseTimer=setTimeout(function(){
    pauseTimer=null;
    if(!document.hidden)return;
    if(state.es){state.es.close();state.es=null;state.paused=true;setLive('idle','paused');}
    else pauseLater(); // still loading or reconnecting: look again later
  },PAUSE_MS);
}
document.addEventListener('visibilitychange',function(){
  if(document.hidden){pauseLater();return;}
  if(pauseTimer){clearTimeout(pauseTimer);pauseTimer=null;}
  if(state.paused){state.paused=false;setLive('off','catching up\u2026');loadLive().then(function(){renderRegions();render();renderFeed();follow();});}
});
setInterval(function(){if(state.status&&!state.paused)render();},15000);
// Chart colours come from the theme when a chart is made: a theme switch makes them again.
if(window.matchMedia)window.matchMedia('(prefers-color-scheme: dark)').addEventListener('change',function(){Object.keys(charts).forEach(function(k){var c=charts[k];if(c.u){c.u.destroy();c.u=null;c.sig='';}});updateCharts();});
start();
})();
`;

const sha256 = (s: string): string => `'sha256-${createHash('sha256').update(s).digest('base64')}'`;

export const DASHBOARD_CSP = [
  "default-src 'none'",
  // The page's own script by hash; 'self' for the chart library, which the page loads with its SRI hash.
  `script-src ${sha256(SCRIPT)} 'self'`,
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
<div class="catalog-banner" id="catalogbanner" role="alert" hidden></div>
<div class="totals" id="totals"></div>
<div class="hosts" id="hosts"></div>
<div class="tools"><input id="filter" type="search" placeholder="Filter by org, app, machine, region\u2026" aria-label="filter"></div>
<div class="panels">
<section class="panel" id="regions"><h2>Regions <span class="muted">nearest first</span></h2>
<table class="rview"><thead><tr><th>region</th><th class="num">started</th><th class="num">healthy</th><th>traffic share</th><th class="num">req/s</th></tr></thead><tbody id="regionrows"></tbody></table>
<div id="regionchart"></div>
</section>
<section class="panel" id="events"><h2>Events <span class="muted">this node, newest first</span></h2><ul class="feed" id="feed"></ul></section>
</div>
<div id="orgs"></div>
<p class="muted" id="updated"></p>
</main>
${UPLOT_JS === null ? '' : `<script src="${UPLOT_URL}" integrity="${UPLOT_SRI}"></script>\n`}<script>${SCRIPT}</script>
</body>
</html>
`;
